import { displayPrefix, generateApiKey, hashApiKey, isWellFormedApiKey, presentedKey, sameDigest } from './api-key';

describe('API key format', () => {
  it('makes 256-bit random keys with a recognisable prefix and a separate id', () => {
    const a = generateApiKey();
    const b = generateApiKey();
    expect(a.key).toMatch(/^fk_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.key.slice(3), 'base64url')).toHaveLength(32);
    expect(a.id).toMatch(/^key_[0-9a-f]{16}$/);
    expect(a.key).not.toBe(b.key);
    expect(a.id).not.toBe(b.id);
    expect(isWellFormedApiKey(a.key)).toBe(true);
    expect(a.key.includes(a.id)).toBe(false);
  });

  it('stores only a SHA-256 digest and a short display prefix', () => {
    const { key } = generateApiKey();
    expect(hashApiKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApiKey(key)).toBe(hashApiKey(key));
    expect(displayPrefix(key)).toHaveLength(10);
    expect(key.startsWith(displayPrefix(key))).toBe(true);
  });

  it('compares digests in constant time and refuses anything that is not a digest', () => {
    const d = hashApiKey('x');
    expect(sameDigest(d, hashApiKey('x'))).toBe(true);
    expect(sameDigest(d, hashApiKey('y'))).toBe(false);
    expect(sameDigest(d, '')).toBe(false);
    expect(sameDigest('zz', 'zz')).toBe(false);
  });

  it.each<[string, Record<string, string | string[] | undefined>, string | undefined]>([
    ['no header', {}, undefined],
    ['bearer', { authorization: 'Bearer fk_abc' }, 'fk_abc'],
    ['bearer, any case', { authorization: 'bearer fk_abc' }, 'fk_abc'],
    ['x-api-key', { 'x-api-key': 'fk_abc' }, 'fk_abc'],
    ['both, the same', { authorization: 'Bearer fk_abc', 'x-api-key': 'fk_abc' }, 'fk_abc'],
    ['both, different', { authorization: 'Bearer fk_abc', 'x-api-key': 'fk_xyz' }, ''],
    ['basic auth', { authorization: 'Basic dXNlcjpwYXNz' }, ''],
    ['bearer without a token', { authorization: 'Bearer ' }, ''],
    ['bearer with two tokens', { authorization: 'Bearer a b' }, ''],
    ['repeated x-api-key', { 'x-api-key': ['a', 'b'] }, ''],
  ])('reads the presented key: %s', (_name, headers, expected) => {
    expect(presentedKey(headers)).toBe(expected);
  });
});
