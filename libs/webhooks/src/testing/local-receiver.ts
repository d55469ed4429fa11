import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Test-only: an HTTP receiver on 127.0.0.1 at a random port that records what it got. */
export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface LocalReceiver {
  port: number;
  url(path?: string): string;
  requests: ReceivedRequest[];
  /** Connections accepted, including ones that never sent a complete request. */
  connections: number;
  close(): Promise<void>;
}

export type ReceiverHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

export async function startReceiver(handler: ReceiverHandler = (_req, res) => res.end('ok')): Promise<LocalReceiver> {
  const requests: ReceivedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  const receiver = { connections: 0 } as LocalReceiver;
  server.on('connection', () => receiver.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(receiver, {
    port,
    requests,
    url: (path = '/hook') => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** A loopback port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const r = await startReceiver();
  await r.close();
  return r.port;
}
