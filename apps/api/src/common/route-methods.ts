import { METHODS } from 'node:http';
import type { Express, Request } from 'express';

/** The parts of an Express 5 router layer this needs (router 2.x; not in express's types). */
interface RouterLayer {
  route?: RouteLike;
  match?: (path: string) => boolean;
}
interface RouteLike {
  methods: Record<string, boolean | undefined>;
}

/**
 * A route on every method is a middleware in route's clothes (Nest mounts forRoutes('*') middleware
 * as `/{*splat}` on all methods): it says nothing about which methods a path supports.
 */
const isCatchAll = (route: RouteLike): boolean => METHODS.every((m) => route.methods[m.toLowerCase()]);

/**
 * Whether a real route answered this request's method. req.route alone does not say: it keeps the
 * last route dispatched, middleware included, and a HEAD is dispatched to any route of its path.
 */
export function handledByRoute(req: Request): boolean {
  const route = (req as Request & { route?: RouteLike }).route;
  if (!route || isCatchAll(route)) return false;
  const method = req.method.toLowerCase();
  return !!route.methods[method] || (method === 'head' && !!route.methods.get);
}

/** path → the methods some registered route answers there (sorted, HEAD with GET); [] for none. */
export type RouteMethods = (path: string) => string[];

/**
 * Reads the methods from the router's own registered routes, so every route, including ones added
 * later, gets its 405 and Allow without a list kept by hand. Only called once routing found
 * nothing, so the hot path never pays for it. A router without the expected shape yields [] (a
 * plain 404), never an error.
 */
export function routeMethodsOf(app: Express): RouteMethods {
  return (path) => {
    const stack = (app as unknown as { router?: { stack?: RouterLayer[] } }).router?.stack ?? [];
    const methods = new Set<string>();
    for (const layer of stack) {
      if (!layer.route || isCatchAll(layer.route) || typeof layer.match !== 'function') continue;
      let hit = false;
      try {
        hit = layer.match(path);
      } catch {
        // A path the matcher cannot decode (bad %-escape) matches no route.
      }
      if (!hit) continue;
      for (const [method, on] of Object.entries(layer.route.methods)) if (on && method !== '_all') methods.add(method.toUpperCase());
    }
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  };
}
