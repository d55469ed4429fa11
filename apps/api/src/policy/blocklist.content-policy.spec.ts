import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlocklistContentPolicy, ContentPolicyConfigError } from './blocklist.content-policy';
import { ContentPolicy, enforceContentPolicy } from './content-policy';

describe('BlocklistContentPolicy', () => {
  const policy = BlocklistContentPolicy.fromConfig({ list: ['gore', 'blood bath', '/\\bnsfw\\d*\\b/i'] });

  it.each([
    ['a lighthouse at dusk', true],
    ['gorgeous sunset', true],
    ['GORE everywhere', false],
    ['a scene of gore.', false],
    ['ｇｏｒｅ in full width', false],
    ['a blood   bath', false],
    ['bloodbath', true],
    ['nsfw2 poster', false],
  ])('%s → allowed %s', async (prompt, allowed) => {
    expect((await policy.check(prompt, '')).allowed).toBe(allowed);
  });

  it('checks the negative prompt too, and never names the rule', async () => {
    const verdict = await policy.check('a cat', 'no gore');
    expect(verdict).toEqual({ allowed: false, reason: 'negative_prompt contains blocked content' });
  });

  it('reads a file with comments and /regex/flags lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    const file = join(dir, 'blocklist.txt');
    writeFileSync(file, '# words\nforbidden\n\n  /sec+ret/i  \n# end\n');
    const p = BlocklistContentPolicy.fromConfig({ file });
    expect(p.size).toBe(2);
    expect((await p.check('a SECCCRET plan', '')).allowed).toBe(false);
    expect((await p.check('the forbidden city', '')).allowed).toBe(false);
    expect((await p.check('# words', '')).allowed).toBe(true);
  });

  it('stops start-up on a bad pattern or an unreadable file, naming the place', () => {
    expect(() => BlocklistContentPolicy.fromConfig({ list: ['/(/'] })).toThrow(ContentPolicyConfigError);
    expect(() => BlocklistContentPolicy.fromConfig({ list: ['/x/g'] })).toThrow(/flags/);
    expect(() => BlocklistContentPolicy.fromConfig({ file: '/nonexistent/blocklist.txt' })).toThrow(/CONTENT_POLICY_FILE/);
  });

  it('allows everything when empty', async () => {
    expect(await BlocklistContentPolicy.fromConfig({}).check('gore', 'gore')).toEqual({ allowed: true });
  });

  it('is one implementation of a swappable hook: a refusal is 422 content_policy', async () => {
    class NoCats extends ContentPolicy {
      async check(prompt: string) {
        return /cat/.test(prompt) ? { allowed: false as const, reason: 'no cats' } : { allowed: true as const };
      }
    }
    await expect(enforceContentPolicy(new NoCats(), 'a dog', '')).resolves.toBeUndefined();
    await expect(enforceContentPolicy(new NoCats(), 'a cat', '')).rejects.toMatchObject({ code: 'content_policy', details: { reason: 'no cats' } });
    await expect(enforceContentPolicy(undefined, 'a cat', '')).resolves.toBeUndefined();
  });
});
