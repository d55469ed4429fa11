import { redactUrl, UNPARSABLE_URL } from './redact-url';

describe('redactUrl', () => {
  it.each([
    ['https://h/p?token=abc', 'https://h/p?token=REDACTED'],
    ['https://h/p?a=1&b=two&c=', 'https://h/p?a=REDACTED&b=REDACTED&c=REDACTED'],
    ['https://h/p?secretvalue', 'https://h/p?REDACTED'],
    ['https://user:pw@h:8443/p?k=v#frag', 'https://h:8443/p?k=REDACTED'],
    ['https://user@h/p', 'https://h/p'],
    ['https://h/p', 'https://h/p'],
    ['https://h/p?', 'https://h/p'],
    ['https://h/p?a=b=c&&d=%20e', 'https://h/p?a=REDACTED&d=REDACTED'],
    ['HTTPS://H/p?x=1', 'https://h/p?x=REDACTED'],
  ])('%s → %s', (input, expected) => {
    expect(redactUrl(input)).toBe(expected);
  });

  it('never echoes an unparsable string', () => {
    expect(redactUrl('not a url token=abc')).toBe(UNPARSABLE_URL);
  });
});
