import { corsOptions, rejectPrototypeKeys } from './http-hardening';

describe('http hardening', () => {
  it('refuses prototype keys at any depth while parsing, and only those', () => {
    const parse = (s: string) => JSON.parse(s, rejectPrototypeKeys) as unknown;
    expect(() => parse('{"__proto__":{"x":1}}')).toThrow(/not allowed/);
    expect(() => parse('{"a":{"b":[{"constructor":1}]}}')).toThrow(/not allowed/);
    expect(parse('{"prompt":"__proto__ constructor","prototype":"v2"}')).toEqual({ prompt: '__proto__ constructor', prototype: 'v2' });
  });

  it('never allows credentials; "*" alone means any origin, otherwise an exact list', () => {
    expect(corsOptions(['*'])).toMatchObject({ origin: '*', credentials: false });
    expect(corsOptions(['https://a.example', 'https://b.example'])).toMatchObject({ origin: ['https://a.example', 'https://b.example'], credentials: false });
  });
});
