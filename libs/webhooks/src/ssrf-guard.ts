import * as dns from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import ipaddr from 'ipaddr.js';
import { DomainError, ErrorCode } from '@app/common';

/**
 * One entry of WEBHOOK_ALLOWED_HOSTS after parsing. `host` is canonical: a lower-case name without
 * a trailing dot, or an IP address as ipaddr.js prints it (IPv6 without brackets). No port: any port.
 */
export interface AllowedHost {
  host: string;
  port?: number;
}

/** The one message every refused webhook URL gets: it must not tell an attacker which rule hit. */
export const INVALID_WEBHOOK_URL_MESSAGE = 'webhook url must be an http or https URL of a publicly reachable host';

/** Error code of a connection refused by the guarded agents, and the error class of such a delivery. */
export const BLOCKED_DESTINATION = 'blocked_destination';

export class BlockedDestinationError extends DomainError {
  constructor() {
    super(BLOCKED_DESTINATION, 'destination address is not allowed for webhooks');
  }
}

/** Resolves a host name to every address it has (A and AAAA). */
export type HostResolver = (host: string) => Promise<string[]>;

/** Same contract as dns.lookup, including `all: true` (which Node's happy-eyeballs connect uses). */
export type LookupFunction = net.LookupFunction;

export interface WebhookUrlCheckOptions {
  allowedHosts: readonly AllowedHost[];
  /** Defaults to dns.lookup with all: true, the resolver the connection itself will use. */
  resolve?: HostResolver;
  /** A resolver that hangs must not hang the request that registers the URL. Default 5 s. */
  resolveTimeoutMs?: number;
  /** Refuse plain http (production), except for allowlisted hosts, which are an explicit opt-in. */
  httpsOnly?: boolean;
}

export interface GuardedAgentOptions {
  allowedHosts: readonly AllowedHost[];
  /** Defaults to dns.lookup; tests inject a stub. */
  lookup?: LookupFunction;
  /** Passed to both agents, e.g. keepAlive, or `ca` for a test receiver's certificate. */
  agentOptions?: https.AgentOptions;
}

export interface GuardedAgents {
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
}

/** A URL after the scheme and userinfo rules, with its host canonical and its port made explicit. */
export interface WebhookTarget {
  url: URL;
  host: string;
  port: number;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Canonical form used on both sides of every allowlist comparison. */
export function canonicalHost(host: string): string {
  const bare = stripBrackets(host).toLowerCase();
  if (net.isIP(bare)) return ipaddr.parse(bare).toString();
  return bare.endsWith('.') ? bare.slice(0, -1) : bare;
}

/**
 * True only for global unicast addresses. ipaddr.js names every special range (loopback, private,
 * link-local, CGNAT, reserved, multicast, unique-local, NAT64, 6to4, …); anything with a name is
 * refused. process() first turns IPv4-mapped IPv6 into IPv4, so ::ffff:127.0.0.1 is judged as
 * 127.0.0.1. Non-canonical spellings (127.1, 0177.0.0.1) are not addresses here: net.isIP refuses them.
 */
export function isGlobalUnicast(address: string): boolean {
  const bare = stripBrackets(address);
  if (net.isIP(bare) === 0) return false;
  try {
    return ipaddr.process(bare).range() === 'unicast';
  } catch {
    return false;
  }
}

function isLocalhostName(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost');
}

function isAllowlisted(allowed: readonly AllowedHost[], host: string, port: number): boolean {
  const h = canonicalHost(host);
  return allowed.some((a) => a.host === h && (a.port === undefined || a.port === port));
}

const ALLOWED_HOST_ENTRY = /^(\[[^\]\s]+\]|[^:[\]/@?#\s]+)(?::(\d{1,5}))?$/;

/**
 * Parses WEBHOOK_ALLOWED_HOSTS entries: `name`, `name:port`, `1.2.3.4[:port]`, `[v6][:port]`.
 * Hosts go through the same WHATWG parser as webhook URLs, so `127.1` and `127.0.0.1` are one entry.
 * A malformed entry is a configuration mistake and throws at startup.
 */
export function parseAllowedHosts(list: readonly string[]): AllowedHost[] {
  const out: AllowedHost[] = [];
  for (const raw of list) {
    const entry = raw.trim();
    if (!entry) continue;
    const m = ALLOWED_HOST_ENTRY.exec(entry);
    if (!m) throw new Error(`allowed webhook host "${raw}" is not host[:port] (IPv6 in brackets)`);
    let hostname: string;
    try {
      hostname = new URL(`http://${m[1]}/`).hostname;
    } catch {
      throw new Error(`allowed webhook host "${raw}" is not a valid host`);
    }
    let port: number | undefined;
    if (m[2] !== undefined) {
      port = Number(m[2]);
      if (port < 1 || port > 65535) throw new Error(`allowed webhook host "${raw}" has an invalid port`);
    }
    out.push(port === undefined ? { host: canonicalHost(hostname) } : { host: canonicalHost(hostname), port });
  }
  return out;
}

/**
 * The rules that need no DNS: WHATWG parse, http/https only, no userinfo, a host present.
 * Returns null when the URL breaks one of them.
 */
export function parseWebhookTarget(url: string): WebhookTarget | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  const defaultPort = DEFAULT_PORTS[u.protocol];
  if (defaultPort === undefined) return null;
  if (u.username !== '' || u.password !== '') return null;
  if (u.hostname === '') return null;
  return { url: u, host: canonicalHost(u.hostname), port: u.port ? Number(u.port) : defaultPort };
}

function invalidUrl(): DomainError {
  return new DomainError(ErrorCode.InvalidWebhookUrl, INVALID_WEBHOOK_URL_MESSAGE);
}

/** The system resolver (getaddrinfo through dns.lookup, every address): what a connection would use. */
export const dnsHostResolver: HostResolver = async (host) => (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('resolve timed out')), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Judges a webhook URL when a client registers it. Throws DomainError(invalid_webhook_url) with one
 * generic message for every refusal. An allowlisted host (and port, if the entry names one) skips
 * the address rules; nothing else loosens them. This check is advisory for delivery: DNS can change,
 * so the guarded agents check again on the address actually connected to.
 */
export async function assertWebhookUrlAllowed(url: string, opts: WebhookUrlCheckOptions): Promise<void> {
  const target = parseWebhookTarget(url);
  if (!target) throw invalidUrl();
  if (isAllowlisted(opts.allowedHosts, target.host, target.port)) return;
  if (opts.httpsOnly && target.url.protocol !== 'https:') throw invalidUrl();
  if (isLocalhostName(target.host)) throw invalidUrl();
  if (net.isIP(target.host)) {
    if (!isGlobalUnicast(target.host)) throw invalidUrl();
    return;
  }
  let addresses: string[];
  try {
    addresses = await withTimeout((opts.resolve ?? dnsHostResolver)(target.host), opts.resolveTimeoutMs ?? 5000);
  } catch {
    throw invalidUrl();
  }
  if (addresses.length === 0 || !addresses.every(isGlobalUnicast)) throw invalidUrl();
}

/** dns.lookup itself, as a LookupFunction. */
export const dnsLookup: LookupFunction = (hostname, options, callback) => dns.lookup(hostname, options, callback);

/**
 * Wraps a lookup so that it fails with blocked_destination unless EVERY address it returned is
 * global unicast. Because this runs inside the connect, the address checked is the address used:
 * a resolver that changes its answer between registration and delivery gains nothing.
 */
export function createGuardedLookup(base: LookupFunction = dnsLookup): LookupFunction {
  return (hostname, options, callback) => {
    base(hostname, options, (err, address, family) => {
      if (err) {
        process.nextTick(callback, err, address, family);
        return;
      }
      const list = Array.isArray(address) ? address.map((a) => a.address) : [address];
      if (list.length === 0 || !list.every(isGlobalUnicast)) {
        process.nextTick(callback, new BlockedDestinationError(), options.all ? [] : '', undefined);
        return;
      }
      process.nextTick(callback, null, address, family);
    });
  };
}

type ConnectCallback = (err: Error | null, stream: Duplex) => void;
type ConnectOptions = http.ClientRequestArgs;

/** Decides, per connection, which lookup it may use, or that it may not connect at all. */
class ConnectGuard {
  private readonly guardedLookup: LookupFunction;

  constructor(
    private readonly allowed: readonly AllowedHost[],
    private readonly baseLookup: LookupFunction,
  ) {
    this.guardedLookup = createGuardedLookup(baseLookup);
  }

  check<T extends ConnectOptions>(options: T, defaultPort: number): T | BlockedDestinationError {
    // A unix socket has no address to judge.
    if (options.socketPath) return new BlockedDestinationError();
    const host = options.host ?? options.hostname ?? '';
    if (!host) return new BlockedDestinationError();
    const port = Number(options.port ?? defaultPort) || defaultPort;
    if (isAllowlisted(this.allowed, host, port)) return { ...options, lookup: this.baseLookup };
    const bare = stripBrackets(host);
    // Literal addresses never reach lookup (net connects to them directly), so judge them here.
    if (net.isIP(bare)) return isGlobalUnicast(bare) ? { ...options } : new BlockedDestinationError();
    if (isLocalhostName(canonicalHost(host))) return new BlockedDestinationError();
    return { ...options, lookup: this.guardedLookup };
  }
}

function refuse(err: Error, callback?: ConnectCallback): undefined {
  if (!callback) throw err;
  // The agent reports a createConnection error through its callback as a request 'error'.
  process.nextTick(callback, err, undefined as unknown as Duplex);
  return undefined;
}

class GuardedHttpAgent extends http.Agent {
  constructor(
    private readonly guard: ConnectGuard,
    options?: http.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(options: ConnectOptions, callback?: ConnectCallback): Duplex | null | undefined {
    const checked = this.guard.check(options, 80);
    if (checked instanceof Error) return refuse(checked, callback);
    return super.createConnection(checked, callback);
  }
}

class GuardedHttpsAgent extends https.Agent {
  constructor(
    private readonly guard: ConnectGuard,
    options?: https.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(options: https.RequestOptions, callback?: ConnectCallback): Duplex | null | undefined {
    const checked = this.guard.check(options, 443);
    if (checked instanceof Error) return refuse(checked, callback);
    return super.createConnection(checked, callback);
  }
}

/**
 * An http and an https agent that refuse to connect anywhere but global unicast addresses (or the
 * allowlist). Literal IPs are judged before connecting; names are judged inside the lookup that the
 * connect uses, on every address it returns. Use them for every request to a user-given URL.
 */
export function createGuardedAgents(opts: GuardedAgentOptions): GuardedAgents {
  const guard = new ConnectGuard(opts.allowedHosts, opts.lookup ?? dnsLookup);
  return {
    httpAgent: new GuardedHttpAgent(guard, opts.agentOptions),
    httpsAgent: new GuardedHttpsAgent(guard, opts.agentOptions),
  };
}
