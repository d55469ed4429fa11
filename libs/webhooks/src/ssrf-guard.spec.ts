import * as http from 'node:http';
import * as https from 'node:https';
import type { LookupAddress } from 'node:dns';
import { DomainError, ErrorCode } from '@app/common';
import {
  BLOCKED_DESTINATION,
  INVALID_WEBHOOK_URL_MESSAGE,
  assertWebhookUrlAllowed,
  createGuardedAgents,
  createGuardedLookup,
  isGlobalUnicast,
  parseAllowedHosts,
  type AllowedHost,
  type HostResolver,
  type LookupFunction,
} from './ssrf-guard';
import { startReceiver, type LocalReceiver } from './testing/local-receiver';
import { REFUSED_WEBHOOK_URLS } from './testing/ssrf-cases';

const PUBLIC_V4 = '93.184.216.34';
const PUBLIC_V6 = '2606:4700:4700::1111';

/** A resolver that answers a public address for every name: refusals then come from the rules, not DNS. */
const publicResolve: HostResolver = async () => [PUBLIC_V4];

async function refusal(url: string, allowedHosts: AllowedHost[] = [], resolve: HostResolver = publicResolve): Promise<unknown> {
  try {
    await assertWebhookUrlAllowed(url, { allowedHosts, resolve });
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectGenericRefusal(err: unknown): void {
  expect(err).toBeInstanceOf(DomainError);
  expect((err as DomainError).code).toBe(ErrorCode.InvalidWebhookUrl);
  expect((err as DomainError).message).toBe(INVALID_WEBHOOK_URL_MESSAGE);
  expect((err as DomainError).details).toBeUndefined();
}

/** A lookup stub that answers from a table, asynchronously like dns.lookup, honouring `all`. */
function stubLookup(table: Record<string, string[]>, calls: { host: string; all: boolean }[] = []): LookupFunction {
  return (hostname, options, callback) => {
    calls.push({ host: hostname, all: Boolean(options.all) });
    setImmediate(() => {
      const addrs = table[hostname];
      if (!addrs) {
        const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
        callback(err, options.all ? [] : '', undefined);
        return;
      }
      const list: LookupAddress[] = addrs.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
      if (options.all) callback(null, list);
      else callback(null, list[0].address, list[0].family);
    });
  };
}

type GetResult = { status: number } | { error: NodeJS.ErrnoException };

function get(url: string, agent: http.Agent): Promise<GetResult> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve) => {
    const req = mod.get(url, { agent, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('timeout', () => req.destroy(new Error('test timeout')));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
  });
}

function errorCode(r: GetResult): string | undefined {
  return 'error' in r ? r.error.code : undefined;
}

describe('isGlobalUnicast', () => {
  it.each([PUBLIC_V4, '8.8.8.8', PUBLIC_V6, '::ffff:8.8.8.8'])('accepts %s', (a) => expect(isGlobalUnicast(a)).toBe(true));
  it.each([
    '127.0.0.1', '10.1.2.3', '172.31.255.255', '192.168.0.1', '100.64.0.1', '169.254.169.254', '0.0.0.0', '255.255.255.255',
    '224.0.0.1', '240.0.0.1', '192.0.0.1', '198.18.0.1', '192.0.2.1', '::1', '::', 'fd00:ec2::254', 'fe80::1', 'fe80::1%eth0',
    '::ffff:127.0.0.1', '64:ff9b::a9fe:a9fe', '2002:a9fe:a9fe::', '2001:db8::1', 'ff02::1',
    // not canonical addresses at all
    '127.1', '0177.0.0.1', '2130706433', 'example.com', '',
  ])('refuses %s', (a) => expect(isGlobalUnicast(a)).toBe(false));
});

describe('parseAllowedHosts', () => {
  it('parses names, IPv4 and bracketed IPv6, with and without a port, canonically', () => {
    expect(parseAllowedHosts(['127.0.0.1:8080', ' Receiver.Test. ', '[::1]:3000', '127.1', '[0:0:0:0:0:0:0:1]', '', 'hooks.example.com:443'])).toEqual([
      { host: '127.0.0.1', port: 8080 },
      { host: 'receiver.test' },
      { host: '::1', port: 3000 },
      { host: '127.0.0.1' },
      { host: '::1' },
      { host: 'hooks.example.com', port: 443 },
    ]);
  });

  it.each(['::1', 'http://example.com', 'user@example.com', 'a b', 'example.com:99999', 'example.com:0', 'example.com/path', 'example.com:'])(
    'refuses the malformed entry %j',
    (entry) => expect(() => parseAllowedHosts([entry])).toThrow(),
  );
});

describe('assertWebhookUrlAllowed', () => {
  // reliability.md S1, plus a few more spellings of the same places.
  const refused = REFUSED_WEBHOOK_URLS;

  it.each(refused)('refuses %j with the one generic message', async (url) => {
    expectGenericRefusal(await refusal(url));
  });

  it('refuses userinfo even on an allowlisted host', async () => {
    expectGenericRefusal(await refusal('http://user:pw@127.0.0.1:8080/hook', parseAllowedHosts(['127.0.0.1:8080'])));
    expectGenericRefusal(await refusal('https://token@hooks.example.com/', parseAllowedHosts(['hooks.example.com'])));
  });

  it('refuses a public-looking name that resolves to a private address', async () => {
    expectGenericRefusal(await refusal('https://hooks.example.com/x', [], async () => ['10.0.0.7']));
    expectGenericRefusal(await refusal('https://hooks.example.com/x', [], async () => ['fd00::1']));
  });

  it('refuses a name when any one of its addresses is private', async () => {
    expectGenericRefusal(await refusal('https://hooks.example.com/x', [], async () => [PUBLIC_V4, '127.0.0.1']));
  });

  it('refuses a name that does not resolve, or resolves to nothing', async () => {
    const enotfound: HostResolver = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    expectGenericRefusal(await refusal('https://nowhere.example/', [], enotfound));
    expectGenericRefusal(await refusal('https://nowhere.example/', [], async () => []));
  });

  it('refuses a name whose resolver hangs, after resolveTimeoutMs', async () => {
    const hang: HostResolver = () => new Promise<string[]>(() => undefined);
    const err = await assertWebhookUrlAllowed('https://slow.example/', { allowedHosts: [], resolve: hang, resolveTimeoutMs: 50 }).catch((e: unknown) => e);
    expectGenericRefusal(err);
  });

  it('accepts public names and public literals on any port', async () => {
    const resolve = jest.fn(publicResolve);
    await expect(assertWebhookUrlAllowed('https://hooks.example.com/x?token=1', { allowedHosts: [], resolve })).resolves.toBeUndefined();
    await expect(assertWebhookUrlAllowed('http://hooks.example.com:8443/x', { allowedHosts: [], resolve })).resolves.toBeUndefined();
    expect(resolve).toHaveBeenCalledWith('hooks.example.com');
    await expect(assertWebhookUrlAllowed(`https://${PUBLIC_V4}/`, { allowedHosts: [], resolve })).resolves.toBeUndefined();
    await expect(assertWebhookUrlAllowed(`https://[${PUBLIC_V6}]:9000/`, { allowedHosts: [], resolve })).resolves.toBeUndefined();
  });

  it('refuses plain http when httpsOnly, except for allowlisted hosts', async () => {
    const allowedHosts = parseAllowedHosts(['127.0.0.1:41234']);
    const err = await assertWebhookUrlAllowed('http://hooks.example.com/', { allowedHosts, resolve: publicResolve, httpsOnly: true }).catch((e: unknown) => e);
    expectGenericRefusal(err);
    await expect(assertWebhookUrlAllowed('https://hooks.example.com/', { allowedHosts, resolve: publicResolve, httpsOnly: true })).resolves.toBeUndefined();
    await expect(assertWebhookUrlAllowed('http://127.0.0.1:41234/', { allowedHosts, httpsOnly: true })).resolves.toBeUndefined();
  });

  it('accepts an allowlisted host:port, and only on that port', async () => {
    const allowedHosts = parseAllowedHosts(['127.0.0.1:41234']);
    await expect(assertWebhookUrlAllowed('http://127.0.0.1:41234/hook', { allowedHosts })).resolves.toBeUndefined();
    // Other spellings of the same address are the same entry once WHATWG has parsed them.
    await expect(assertWebhookUrlAllowed('http://127.1:41234/hook', { allowedHosts })).resolves.toBeUndefined();
    expectGenericRefusal(await refusal('http://127.0.0.1:41235/hook', allowedHosts));
    expectGenericRefusal(await refusal('http://127.0.0.1/hook', allowedHosts));
    expectGenericRefusal(await refusal('http://127.0.0.2:41234/hook', allowedHosts));
  });

  it('matches an allowlisted default port whether or not the URL spells it', async () => {
    const allowedHosts = parseAllowedHosts(['[::1]:80']);
    await expect(assertWebhookUrlAllowed('http://[::1]/', { allowedHosts })).resolves.toBeUndefined();
    await expect(assertWebhookUrlAllowed('http://[0:0::1]:80/', { allowedHosts })).resolves.toBeUndefined();
    expectGenericRefusal(await refusal('https://[::1]/', allowedHosts));
  });

  it('skips resolution for an allowlisted name (any port when the entry names none)', async () => {
    const resolve = jest.fn<Promise<string[]>, [string]>(async () => ['127.0.0.1']);
    const allowedHosts = parseAllowedHosts(['receiver.test']);
    await expect(assertWebhookUrlAllowed('http://RECEIVER.test.:1234/', { allowedHosts, resolve })).resolves.toBeUndefined();
    expect(resolve).not.toHaveBeenCalled();
    // Not a suffix match.
    expectGenericRefusal(await refusal('http://evil.receiver.test/', allowedHosts, resolve));
  });
});

describe('createGuardedLookup', () => {
  function run(lookup: LookupFunction, all: boolean): Promise<{ err: NodeJS.ErrnoException | null; address: unknown }> {
    return new Promise((resolve) => lookup('host.test', { all }, (err, address) => resolve({ err, address })));
  }

  it('passes an all-public answer through, with and without all', async () => {
    const lookup = createGuardedLookup(stubLookup({ 'host.test': [PUBLIC_V4, PUBLIC_V6] }));
    expect(await run(lookup, true)).toEqual({ err: null, address: [{ address: PUBLIC_V4, family: 4 }, { address: PUBLIC_V6, family: 6 }] });
    expect(await run(lookup, false)).toEqual({ err: null, address: PUBLIC_V4 });
  });

  it('blocks when any address of an all:true answer is not global unicast', async () => {
    const { err } = await run(createGuardedLookup(stubLookup({ 'host.test': [PUBLIC_V4, '127.0.0.1'] })), true);
    expect(err?.code).toBe(BLOCKED_DESTINATION);
  });

  it('blocks a single private answer', async () => {
    const { err } = await run(createGuardedLookup(stubLookup({ 'host.test': ['169.254.169.254'] })), false);
    expect(err?.code).toBe(BLOCKED_DESTINATION);
  });

  it('passes resolver errors through unchanged', async () => {
    const { err } = await run(createGuardedLookup(stubLookup({})), true);
    expect(err?.code).toBe('ENOTFOUND');
  });
});

describe('createGuardedAgents', () => {
  let receiver: LocalReceiver;
  beforeEach(async () => {
    receiver = await startReceiver((_req, res) => res.end('ok'));
  });
  afterEach(() => receiver.close());

  it('blocks a literal loopback address before connecting', async () => {
    const { httpAgent } = createGuardedAgents({ allowedHosts: [] });
    const r = await get(receiver.url(), httpAgent);
    expect(errorCode(r)).toBe(BLOCKED_DESTINATION);
    expect(receiver.connections).toBe(0);
  });

  it('blocks literal private addresses for https too, without connecting', async () => {
    const { httpsAgent } = createGuardedAgents({ allowedHosts: [] });
    expect(errorCode(await get(`https://127.0.0.1:${receiver.port}/`, httpsAgent))).toBe(BLOCKED_DESTINATION);
    expect(errorCode(await get(`https://[::1]:${receiver.port}/`, httpsAgent))).toBe(BLOCKED_DESTINATION);
    expect(errorCode(await get('https://[::ffff:169.254.169.254]/', httpsAgent))).toBe(BLOCKED_DESTINATION);
    expect(receiver.connections).toBe(0);
  });

  it('connects to an allowlisted literal host:port, and blocks the same host on another port', async () => {
    const { httpAgent } = createGuardedAgents({ allowedHosts: parseAllowedHosts([`127.0.0.1:${receiver.port}`]) });
    expect(await get(receiver.url(), httpAgent)).toEqual({ status: 200 });
    const other = await startReceiver();
    try {
      expect(errorCode(await get(other.url(), httpAgent))).toBe(BLOCKED_DESTINATION);
      expect(other.connections).toBe(0);
    } finally {
      await other.close();
    }
  });

  it('checks names inside the connect lookup: a name resolving to loopback is blocked', async () => {
    const calls: { host: string; all: boolean }[] = [];
    const { httpAgent, httpsAgent } = createGuardedAgents({ allowedHosts: [], lookup: stubLookup({ 'receiver.test': ['127.0.0.1'] }, calls) });
    expect(errorCode(await get(`http://receiver.test:${receiver.port}/`, httpAgent))).toBe(BLOCKED_DESTINATION);
    expect(errorCode(await get(`https://receiver.test:${receiver.port}/`, httpsAgent))).toBe(BLOCKED_DESTINATION);
    expect(calls.map((c) => c.host)).toEqual(['receiver.test', 'receiver.test']);
    expect(receiver.connections).toBe(0);
  });

  it('blocks a name with one public and one private record', async () => {
    const { httpAgent } = createGuardedAgents({ allowedHosts: [], lookup: stubLookup({ 'receiver.test': [PUBLIC_V4, '127.0.0.1'] }) });
    expect(errorCode(await get(`http://receiver.test:${receiver.port}/`, httpAgent))).toBe(BLOCKED_DESTINATION);
  });

  it('lets an allowlisted name through whatever it resolves to', async () => {
    const { httpAgent } = createGuardedAgents({
      allowedHosts: parseAllowedHosts([`receiver.test:${receiver.port}`]),
      lookup: stubLookup({ 'receiver.test': ['127.0.0.1'] }),
    });
    expect(await get(`http://receiver.test:${receiver.port}/`, httpAgent)).toEqual({ status: 200 });
    expect(receiver.requests).toHaveLength(1);
  });

  it('blocks localhost names and unix sockets without any lookup', async () => {
    const lookup = jest.fn(stubLookup({ localhost: ['127.0.0.1'] }));
    const { httpAgent } = createGuardedAgents({ allowedHosts: [], lookup });
    expect(errorCode(await get(`http://localhost:${receiver.port}/`, httpAgent))).toBe(BLOCKED_DESTINATION);
    const viaSocket = await new Promise<GetResult>((resolve) => {
      const req = http.get({ socketPath: '/var/run/docker.sock', path: '/', agent: httpAgent }, (res) => resolve({ status: res.statusCode ?? 0 }));
      req.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    });
    expect(errorCode(viaSocket)).toBe(BLOCKED_DESTINATION);
    expect(lookup).not.toHaveBeenCalled();
  });
});
