import axios from 'axios';
import { execFileSync } from 'node:child_process';
import type { LookupAddress } from 'node:dns';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { assertWebhookUrlAllowed, createGuardedAgents, parseAllowedHosts, type GuardedAgents, type LookupFunction } from './ssrf-guard';
import { parseRetryAfter, sendWebhook, type SendWebhookInput } from './webhook-sender';
import { closedPort, startReceiver, type LocalReceiver, type ReceiverHandler } from './testing/local-receiver';
import { generateWebhookSecret } from './webhook-signer';

const SECRET = generateWebhookSecret();
// Trailing newline and inner spaces on purpose: they must arrive exactly as signed.
const BODY = '{"type": "job.succeeded", "job_id": "j_1"}\n';

const receivers: LocalReceiver[] = [];
async function receiver(handler?: ReceiverHandler): Promise<LocalReceiver> {
  const r = await startReceiver(handler);
  receivers.push(r);
  return r;
}
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

/** Agents that may reach exactly these loopback receivers. */
function agentsFor(...rs: LocalReceiver[]): GuardedAgents {
  return createGuardedAgents({ allowedHosts: parseAllowedHosts(rs.map((r) => `127.0.0.1:${r.port}`)) });
}

function send(r: LocalReceiver, over: Partial<SendWebhookInput> = {}) {
  return sendWebhook({ url: r.url(), webhookId: 'msg_abc', body: BODY, secret: SECRET, timeoutMs: 2000, agents: agentsFor(r), ...over });
}

describe('sendWebhook', () => {
  it('delivers on 2xx with headers and exact bytes that standardwebhooks verifies', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 204;
      res.end();
    });
    const attempt = await send(r);
    expect(attempt).toMatchObject({ outcome: 'delivered', status: 204 });
    expect(attempt.error).toBeUndefined();
    expect(r.requests).toHaveLength(1);
    const got = r.requests[0];
    expect(got.method).toBe('POST');
    expect(got.body.toString('utf8')).toBe(BODY);
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['user-agent']).toBe('Fictures-Webhooks/1');
    expect(got.headers['webhook-id']).toBe('msg_abc');
    expect(got.headers.authorization).toBeUndefined();
    const headers = {
      'webhook-id': String(got.headers['webhook-id']),
      'webhook-timestamp': String(got.headers['webhook-timestamp']),
      'webhook-signature': String(got.headers['webhook-signature']),
    };
    expect(() => new Webhook(SECRET).verify(got.body.toString('utf8'), headers)).not.toThrow();
    expect(() => new Webhook(SECRET).verify(got.body.toString('utf8').replace('j_1', 'j_2'), headers)).toThrow();
  });

  it('signs every attempt afresh under the same webhook-id', async () => {
    const r = await receiver();
    let t = 1_700_000_000_000;
    const now = () => t;
    await send(r, { now });
    t += 7000;
    await send(r, { now });
    const [a, b] = r.requests.map((q) => q.headers);
    expect(a['webhook-id']).toBe('msg_abc');
    expect(b['webhook-id']).toBe('msg_abc');
    expect(a['webhook-timestamp']).toBe('1700000000');
    expect(b['webhook-timestamp']).toBe('1700000007');
    expect(b['webhook-signature']).not.toBe(a['webhook-signature']);
  });

  it('asks for a retry on 500 and keeps a short snippet', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 500;
      res.end('x'.repeat(5000));
    });
    const attempt = await send(r);
    expect(attempt).toMatchObject({ outcome: 'retry', status: 500, error: 'http_500', responseBytes: 5000 });
    expect(attempt.responseSnippet).toHaveLength(1024);
    expect(attempt.retryAfterMs).toBeUndefined();
  });

  it('does not follow a 302 and asks for a retry', async () => {
    const target = await receiver();
    const r = await receiver((_req, res) => {
      res.writeHead(302, { location: target.url('/stolen') });
      res.end();
    });
    const attempt = await sendWebhook({ url: r.url(), webhookId: 'm', body: BODY, secret: SECRET, timeoutMs: 2000, agents: agentsFor(r, target) });
    expect(attempt).toMatchObject({ outcome: 'retry', status: 302, error: 'redirect' });
    expect(target.connections).toBe(0);
    expect(target.requests).toHaveLength(0);
  });

  it('reports 410 as gone', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 410;
      res.end();
    });
    expect(await send(r)).toMatchObject({ outcome: 'gone', status: 410 });
  });

  it('reads Retry-After seconds on 429', async () => {
    const r = await receiver((_req, res) => {
      res.writeHead(429, { 'retry-after': '7' });
      res.end();
    });
    expect(await send(r)).toMatchObject({ outcome: 'retry', status: 429, error: 'http_429', retryAfterMs: 7000 });
  });

  it('reads a Retry-After HTTP-date on 503', async () => {
    const t = Date.UTC(2030, 0, 1, 12, 0, 0);
    const r = await receiver((_req, res) => {
      res.writeHead(503, { 'retry-after': new Date(t + 120_000).toUTCString() });
      res.end();
    });
    expect(await send(r, { now: () => t })).toMatchObject({ outcome: 'retry', status: 503, retryAfterMs: 120_000 });
  });

  it('cuts off a receiver that never answers at timeoutMs', async () => {
    const r = await receiver(() => undefined);
    const attempt = await send(r, { timeoutMs: 300 });
    expect(attempt).toMatchObject({ outcome: 'retry', error: 'timeout' });
    expect(attempt.status).toBeUndefined();
    expect(attempt.durationMs).toBeGreaterThanOrEqual(250);
    expect(attempt.durationMs).toBeLessThan(1500);
  });

  it('ends an attempt whose response body stalls at the deadline, keeping the status', async () => {
    const r = await receiver((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    });
    const attempt = await send(r, { timeoutMs: 300 });
    expect(attempt).toMatchObject({ outcome: 'delivered', status: 200, responseSnippet: 'partial' });
    expect(attempt.durationMs).toBeGreaterThanOrEqual(250);
    expect(attempt.durationMs).toBeLessThan(1500);
  });

  it('reads at most 64 KiB of an endless response and closes the connection', async () => {
    let closed = false;
    const r = await receiver((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(16 * 1024, 'a');
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', () => (closed = true));
      pump();
    });
    const attempt = await send(r, { timeoutMs: 5000 });
    expect(attempt).toMatchObject({ outcome: 'delivered', status: 200, responseBytes: 64 * 1024 });
    expect(attempt.responseSnippet).toHaveLength(1024);
    expect(attempt.durationMs).toBeLessThan(2000);
    await new Promise<void>((resolve) => {
      const check = () => (closed ? resolve() : setTimeout(check, 5));
      check();
    });
  });

  it('honours a smaller maxResponseBytes', async () => {
    const r = await receiver((_req, res) => res.end('y'.repeat(10_000)));
    expect(await send(r, { maxResponseBytes: 100 })).toMatchObject({ outcome: 'delivered', responseBytes: 100 });
  });

  it('classifies a refused connection and a reset', async () => {
    const port = await closedPort();
    const refused = await sendWebhook({
      url: `http://127.0.0.1:${port}/`,
      webhookId: 'm',
      body: BODY,
      secret: SECRET,
      timeoutMs: 2000,
      agents: createGuardedAgents({ allowedHosts: parseAllowedHosts([`127.0.0.1:${port}`]) }),
    });
    expect(refused).toMatchObject({ outcome: 'retry', error: 'connection_refused' });

    const r = await receiver((req) => req.socket.destroy());
    expect(await send(r)).toMatchObject({ outcome: 'retry', error: 'connection_reset' });
  });

  it('blocks a loopback receiver that is not allowlisted, without connecting', async () => {
    const r = await receiver();
    const attempt = await send(r, { agents: createGuardedAgents({ allowedHosts: [] }) });
    expect(attempt).toMatchObject({ outcome: 'blocked', error: 'blocked_destination' });
    expect(r.connections).toBe(0);
  });

  it('refuses to send to a URL with userinfo or another scheme', async () => {
    const r = await receiver();
    const agents = agentsFor(r);
    for (const url of [`http://user:pw@127.0.0.1:${r.port}/`, `ftp://127.0.0.1:${r.port}/`, 'nonsense']) {
      expect(await send(r, { url, agents })).toMatchObject({ outcome: 'blocked', error: 'invalid_url' });
    }
    expect(r.connections).toBe(0);
  });

  it('defeats DNS rebinding: public at registration, loopback at connect → blocked', async () => {
    const r = await receiver();
    // One resolver for both checks: the first answer is public, every later one is loopback.
    let calls = 0;
    const answer = () => (calls++ === 0 ? '93.184.216.34' : '127.0.0.1');
    const resolve = async () => [answer()];
    const lookup: LookupFunction = (_host, options, callback) => {
      const address = answer();
      const rec: LookupAddress = { address, family: 4 };
      setImmediate(() => (options.all ? callback(null, [rec]) : callback(null, address, 4)));
    };
    const url = `http://rebind.test:${r.port}/hook`;

    await expect(assertWebhookUrlAllowed(url, { allowedHosts: [], resolve })).resolves.toBeUndefined();
    const attempt = await sendWebhook({ url, webhookId: 'm', body: BODY, secret: SECRET, timeoutMs: 2000, agents: createGuardedAgents({ allowedHosts: [], lookup }) });
    expect(attempt).toMatchObject({ outcome: 'blocked', error: 'blocked_destination' });
    expect(calls).toBe(2);
    expect(r.connections).toBe(0);
  });

  describe('with HTTP(S)_PROXY in the environment', () => {
    const names = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];
    let saved: Record<string, string | undefined>;
    beforeEach(() => {
      saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
    });
    afterEach(() => {
      for (const n of names) {
        if (saved[n] === undefined) delete process.env[n];
        else process.env[n] = saved[n];
      }
    });

    it('goes direct', async () => {
      const proxy = await receiver((_req, res) => {
        res.statusCode = 502;
        res.end('proxy');
      });
      const r = await receiver();
      for (const n of names) delete process.env[n];
      process.env.HTTP_PROXY = process.env.http_proxy = proxy.url('');
      process.env.HTTPS_PROXY = process.env.https_proxy = proxy.url('');

      // Shows the environment is live: a default axios call would go through the proxy.
      const viaDefault = await axios.get(r.url('/probe'), { validateStatus: () => true });
      expect(viaDefault.status).toBe(502);
      expect(proxy.requests).toHaveLength(1);

      const attempt = await send(r);
      expect(attempt).toMatchObject({ outcome: 'delivered', status: 200 });
      expect(r.requests.map((q) => q.url)).toEqual(['/hook']);
      expect(proxy.requests).toHaveLength(1);
    });
  });
});

/** A self-signed certificate for 127.0.0.1 made by the openssl CLI, or null when it is missing. */
function selfSignedCert(): { key: Buffer; cert: Buffer } | null {
  const dir = mkdtempSync(join(tmpdir(), 'webhooks-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const tls = selfSignedCert();
(tls ? describe : describe.skip)('sendWebhook over https', () => {
  let server: https.Server;
  let port: number;
  const bodies: string[] = [];
  beforeAll(async () => {
    server = https.createServer({ key: tls!.key, cert: tls!.cert }, (req, res) => {
      let b = '';
      req.on('data', (c: Buffer) => (b += c.toString('utf8')));
      req.on('end', () => {
        bodies.push(b);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );

  it('delivers through the guarded https agent to an allowlisted, trusted receiver', async () => {
    const agents = createGuardedAgents({ allowedHosts: parseAllowedHosts([`127.0.0.1:${port}`]), agentOptions: { ca: tls!.cert } });
    const attempt = await sendWebhook({ url: `https://127.0.0.1:${port}/hook`, webhookId: 'm', body: BODY, secret: SECRET, timeoutMs: 2000, agents });
    expect(attempt).toMatchObject({ outcome: 'delivered', status: 200, responseSnippet: 'ok' });
    expect(bodies).toEqual([BODY]);
  });

  it('classifies an untrusted certificate as tls_error', async () => {
    const agents = createGuardedAgents({ allowedHosts: parseAllowedHosts([`127.0.0.1:${port}`]) });
    const attempt = await sendWebhook({ url: `https://127.0.0.1:${port}/hook`, webhookId: 'm', body: BODY, secret: SECRET, timeoutMs: 2000, agents });
    expect(attempt).toMatchObject({ outcome: 'retry', error: 'tls_error' });
  });

  it('blocks the same receiver over https when it is not allowlisted', async () => {
    const attempt = await sendWebhook({ url: `https://127.0.0.1:${port}/hook`, webhookId: 'm', body: BODY, secret: SECRET, timeoutMs: 2000, agents: createGuardedAgents({ allowedHosts: [] }) });
    expect(attempt).toMatchObject({ outcome: 'blocked', error: 'blocked_destination' });
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2030, 0, 1);
  it.each([
    ['7', 7000],
    [' 0 ', 0],
    [new Date(now + 30_000).toUTCString(), 30_000],
    [new Date(now - 30_000).toUTCString(), 0],
  ])('%j → %d ms', (v, ms) => expect(parseRetryAfter(v, now)).toBe(ms));
  it.each([undefined, '', 'soon', '-5', '1.5'])('%j → undefined', (v) => expect(parseRetryAfter(v, now)).toBeUndefined());
});
