import { readFileSync } from 'node:fs';
import { ContentPolicy, type ContentPolicyVerdict } from './content-policy';

export class ContentPolicyConfigError extends Error {}

interface Rule {
  /** Where the rule came from, for error messages at start-up (never sent to clients). */
  source: string;
  re: RegExp;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** "/pattern/flags" → a RegExp; anything else → a whole-word (or whole-phrase), case-insensitive match. */
export function parseRule(entry: string, source: string): Rule {
  const m = /^\/(.+)\/([a-z]*)$/s.exec(entry);
  if (m) {
    const flags = m[2];
    if (/[gy]/.test(flags) || new Set(flags).size !== flags.length) throw new ContentPolicyConfigError(`${source}: flags "${flags}" are not allowed (no g or y; each at most once)`);
    try {
      return { source, re: new RegExp(m[1], flags) };
    } catch (e) {
      throw new ContentPolicyConfigError(`${source}: invalid regular expression: ${(e as Error).message}`);
    }
  }
  // Letters and digits on either side make another word: "gore" does not block "gorgeous".
  const phrase = entry.normalize('NFKC').trim().split(/\s+/).map(escapeRegExp).join('\\s+');
  return { source, re: new RegExp(`(?<![\\p{L}\\p{N}])${phrase}(?![\\p{L}\\p{N}])`, 'iu') };
}

/** The lines of a blocklist file: one entry per line, blank lines and # comments ignored. */
export function parseBlocklist(text: string, file: string): Rule[] {
  return text
    .split(/\r?\n/)
    .map((line, i) => ({ line: line.trim(), n: i + 1 }))
    .filter(({ line }) => line && !line.startsWith('#'))
    .map(({ line, n }) => parseRule(line, `${file}:${n}`));
}

/**
 * The shipped content policy: a blocklist of words, phrases and /regex/flags patterns from
 * CONTENT_POLICY_FILE and CONTENT_POLICY_BLOCKLIST, matched against the prompt and the negative
 * prompt after Unicode NFKC normalisation (so full-width or ligature look-alikes match too).
 * Empty: everything is allowed. The reason never names the rule that matched.
 */
export class BlocklistContentPolicy extends ContentPolicy {
  constructor(private readonly rules: Rule[]) {
    super();
  }

  static fromConfig(opts: { file?: string; list?: string[] }): BlocklistContentPolicy {
    const rules: Rule[] = [];
    if (opts.file) {
      let text: string;
      try {
        text = readFileSync(opts.file, 'utf8');
      } catch (e) {
        throw new ContentPolicyConfigError(`CONTENT_POLICY_FILE ${opts.file} cannot be read: ${(e as Error).message}`);
      }
      rules.push(...parseBlocklist(text, opts.file));
    }
    (opts.list ?? []).forEach((entry, i) => rules.push(parseRule(entry, `CONTENT_POLICY_BLOCKLIST[${i}]`)));
    return new BlocklistContentPolicy(rules);
  }

  get size(): number {
    return this.rules.length;
  }

  async check(prompt: string, negativePrompt: string): Promise<ContentPolicyVerdict> {
    for (const [field, text] of [['prompt', prompt], ['negative_prompt', negativePrompt]] as const) {
      const normalized = (text ?? '').normalize('NFKC');
      if (this.rules.some((r) => r.re.test(normalized))) return { allowed: false, reason: `${field} contains blocked content` };
    }
    return { allowed: true };
  }
}
