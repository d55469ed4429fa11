import { ValidateBy, ValidateIf, type ValidationArguments } from 'class-validator';

/**
 * Request fields are checked by an ordered list of rules each, and a field reports only the first
 * rule it breaks: class-validator's separate decorators all run and report at once, which gave
 * `{"width": "512"}` three contradictory messages ("must be an integer", "not less than 256"…).
 */
export type Rule = (value: unknown, field: string, body: object) => string | undefined;

/** C0 controls but \t and \n, DEL and C1: invisible, and they break logs, terminals and ComfyUI's text nodes. */
const FORBIDDEN_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
/** A lone surrogate (in u-mode, a surrogate pair is one code point and does not match). */
const LONE_SURROGATE = /[\ud800-\udfff]/u;
/**
 * A character that shows: not whitespace, not a control, format, unassigned or default-ignorable
 * code point (zero-width space, Hangul filler…), not a lone surrogate.
 */
const VISIBLE = /[^\p{White_Space}\p{Cc}\p{Cf}\p{Cs}\p{Cn}\p{Default_Ignorable_Code_Point}]/u;

const codePoint = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/** Why a string a client sent is not plain text, or undefined when it is. */
export function unsafeTextProblem(s: string): string | undefined {
  const control = FORBIDDEN_CONTROL.exec(s);
  if (control) return `contains the control character ${codePoint(control[0])} at position ${control.index} (only \\n and \\t are allowed)`;
  const lone = LONE_SURROGATE.exec(s);
  if (lone) return `contains an unpaired surrogate ${codePoint(lone[0])} at position ${lone.index} (not valid Unicode)`;
  return undefined;
}

/** Length in characters (code points), as the public limits count them. */
const length = (s: string) => [...s].length;

export const rules = {
  /** A string of plain text (no controls but \n and \t, no lone surrogates), at most max characters. */
  text: (max: number): Rule => (v, f) => {
    if (typeof v !== 'string') return `${f} must be a string`;
    const unsafe = unsafeTextProblem(v);
    if (unsafe) return `${f} ${unsafe}`;
    if (length(v) > max) return `${f} must be at most ${max} characters`;
    return undefined;
  },
  visible: ((v, f) => (typeof v === 'string' && !VISIBLE.test(v) ? `${f} must contain at least one visible character` : undefined)) as Rule,
  /** Empty means "none" (the original service's clients send negative_prompt: ""); anything else must show. */
  emptyOrVisible: ((v, f) => (typeof v === 'string' && v !== '' && !VISIBLE.test(v) ? `${f} must be empty or contain at least one visible character` : undefined)) as Rule,
  integer: ((v, f) => (typeof v === 'number' && Number.isInteger(v) ? undefined : `${f} must be an integer`)) as Rule,
  number: ((v, f) => (typeof v === 'number' && Number.isFinite(v) ? undefined : `${f} must be a number`)) as Rule,
  between: (min: number, max: number): Rule => (v, f) => (typeof v === 'number' && v >= min && v <= max ? undefined : `${f} must be between ${min} and ${max}`),
  matches: (re: RegExp, message: string): Rule => (v, f) => (typeof v === 'string' && re.test(v) ? undefined : `${f} ${message}`),
  /** A flat object of string values; keys and values are plain text. */
  stringMap: (o: { maxKeys: number; keyMax: number; valueMax: number }): Rule => (v, f) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) return `${f} must be an object of string values`;
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length > o.maxKeys) return `${f} must have at most ${o.maxKeys} entries`;
    for (const [k, value] of entries) {
      const unsafeKey = unsafeTextProblem(k);
      if (unsafeKey) return `${f} key ${JSON.stringify(k)} ${unsafeKey}`;
      if (k.length === 0 || length(k) > o.keyMax) return `${f} keys must be 1 to ${o.keyMax} characters`;
      if (value === null) return `${f}.${k} must not be null; omit the entry`;
      if (typeof value !== 'string') return `${f}.${k} must be a string`;
      const unsafe = unsafeTextProblem(value);
      if (unsafe) return `${f}.${k} ${unsafe}`;
      if (length(value) > o.valueMax) return `${f}.${k} must be at most ${o.valueMax} characters`;
    }
    return undefined;
  },
  /** A non-empty list of distinct values out of `allowed`. */
  listOf: (allowed: readonly string[], maxItems: number): Rule => (v, f) => {
    if (!Array.isArray(v)) return `${f} must be a list`;
    if (!v.length) return `${f} must not be empty`;
    if (v.length > maxItems) return `${f} must have at most ${maxItems} entries`;
    const bad = v.find((x) => typeof x !== 'string' || !allowed.includes(x));
    if (bad !== undefined) return `${f} entries must be one of ${allowed.join(', ')}`;
    if (new Set(v).size !== v.length) return `${f} must not repeat an entry`;
    return undefined;
  },
  /** One value out of `allowed`. */
  oneOf: (allowed: readonly string[]): Rule => (v, f) => (typeof v === 'string' && allowed.includes(v) ? undefined : `${f} must be one of ${allowed.join(', ')}`),
  boolean: ((v, f) => (typeof v === 'boolean' ? undefined : `${f} must be true or false`)) as Rule,
  /** Two ways of saying the same thing: refuse both at once rather than pick one silently. */
  excludes: (...others: string[]): Rule => (_v, f, body) => {
    const given = others.filter((o) => (body as Record<string, unknown>)[o] !== undefined);
    return given.length ? `${f} cannot be combined with ${given.join(' or ')}; send one or the other` : undefined;
  },
  /** This field only has a meaning when `other` is one of `values`. */
  onlyWith: (other: string, values: readonly string[]): Rule => (_v, f, body) =>
    values.includes((body as Record<string, unknown>)[other] as string) ? undefined : `${f} applies only with ${other} ${values.join(' or ')}`,
  /** This field means nothing without `other`: say so instead of silently ignoring it. */
  requires: (other: string): Rule => (_v, f, body) => (typeof (body as Record<string, unknown>)[other] === 'string' ? undefined : `${f} needs ${other}`),
};

const notNull: Rule = (v, f) => (v === null ? `${f} must not be null; null is not a value, omit the field to use its default` : undefined);

function firstProblem(list: Rule[], value: unknown, args: ValidationArguments | undefined): string | undefined {
  const field = args?.property ?? 'value';
  const body = (args?.object ?? {}) as object;
  for (const rule of list) {
    const problem = rule(value, field, body);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function fieldRules(list: Rule[]): PropertyDecorator {
  return ValidateBy({
    name: 'fieldRules',
    validator: {
      validate: (value: unknown, args?: ValidationArguments) => firstProblem(list, value, args) === undefined,
      defaultMessage: (args?: ValidationArguments) => firstProblem(list, args?.value, args) ?? 'invalid',
    },
  });
}

/** A field that must be present; its rules run in order and only the first broken one is reported. */
export function RequiredField(...list: Rule[]): PropertyDecorator {
  const present: Rule = (v, f) => (v === undefined ? `${f} is required` : v === null ? `${f} must not be null` : undefined);
  return fieldRules([present, ...list]);
}

/**
 * A field that may be omitted, but never sent as null: class-validator's IsOptional lets null
 * through, and the defaults are applied with `??`, so null would silently mean "default".
 */
export function OptionalField(...list: Rule[]): PropertyDecorator {
  return (target: object, key: string | symbol) => {
    ValidateIf((_o: object, v: unknown) => v !== undefined)(target, key);
    fieldRules([notNull, ...list])(target, key);
  };
}
