/**
 * Python value semantics the validator relies on: int()/float()/str()/bool() coercion with the
 * exact exception texts, repr() for messages, and mixed int/float comparisons.
 */
import { JsonValue, PyFloat, isJsonObject, keysOf, pyFloatRepr } from './py-json';

/** A Python exception: `pyType` is the class name (`ValueError`), `message` is `str(ex)`. */
export class PyException extends Error {
  constructor(readonly pyType: string, message: string) {
    super(message);
  }
}

export function pyTypeName(v: JsonValue): string {
  if (v === null) return 'NoneType';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof PyFloat) return 'float';
  if (Array.isArray(v)) return 'list';
  return 'dict';
}

function reprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + quote;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + quote;
}

/** Python `repr()` of a JSON-derived value. */
export function pyRepr(v: JsonValue): string {
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return Math.abs(v) < 1e21 ? String(v) : BigInt(v).toString();
    return pyFloatRepr(v);
  }
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return reprString(v);
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (Array.isArray(v)) return '[' + v.map(pyRepr).join(', ') + ']';
  return '{' + keysOf(v).map((k) => `${reprString(k)}: ${pyRepr(v[k])}`).join(', ') + '}';
}

/** Python `str()`. */
export function pyStr(v: JsonValue): string {
  return typeof v === 'string' ? v : pyRepr(v);
}

function intFromNumber(x: number): number | bigint {
  if (Number.isNaN(x)) throw new PyException('ValueError', 'cannot convert float NaN to integer');
  if (!Number.isFinite(x)) throw new PyException('OverflowError', 'cannot convert float infinity to integer');
  const t = Math.trunc(x);
  return Number.isSafeInteger(t) ? t : BigInt(t);
}

/** Python `int(v)`. */
export function pyInt(v: JsonValue): number | bigint {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') return intFromNumber(v);
  if (typeof v === 'bigint') return v;
  if (v instanceof PyFloat) return intFromNumber(v.value);
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?\d+(?:_\d+)*$/.test(s)) {
      const b = BigInt(s.replace(/_/g, ''));
      const asNum = Number(b);
      return Number.isSafeInteger(asNum) ? asNum : b;
    }
    throw new PyException('ValueError', `invalid literal for int() with base 10: ${reprString(v)}`);
  }
  throw new PyException(
    'TypeError',
    `int() argument must be a string, a bytes-like object or a real number, not '${pyTypeName(v)}'`,
  );
}

/** Python `float(v)`, returned as PyFloat so it is written back as a float. */
export function pyFloat(v: JsonValue): PyFloat {
  if (typeof v === 'boolean') return new PyFloat(v ? 1 : 0);
  if (typeof v === 'number') return new PyFloat(v);
  if (typeof v === 'bigint') return new PyFloat(Number(v));
  if (v instanceof PyFloat) return v;
  if (typeof v === 'string') {
    const s = v.trim();
    const special = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
    if (special) {
      const neg = special[1] === '-';
      if (special[2].toLowerCase() === 'nan') return new PyFloat(NaN);
      return new PyFloat(neg ? -Infinity : Infinity);
    }
    if (/^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/.test(s)) {
      return new PyFloat(Number(s.replace(/_/g, '')));
    }
    throw new PyException('ValueError', `could not convert string to float: ${reprString(v)}`);
  }
  throw new PyException('TypeError', `float() argument must be a string or a real number, not '${pyTypeName(v)}'`);
}

/** Python truthiness (`bool(v)`). */
export function pyTruthy(v: JsonValue | undefined): boolean {
  if (v === null || v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'bigint') return v !== 0n;
  if (typeof v === 'string') return v.length > 0;
  if (v instanceof PyFloat) return v.value !== 0;
  if (Array.isArray(v)) return v.length > 0;
  return keysOf(v).length > 0;
}

/** Numeric view for comparisons; undefined when the value is not a number in Python. */
function numeric(v: JsonValue): number | bigint | undefined {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v instanceof PyFloat) return v.value;
  return undefined;
}

/** `a < b` for Python numbers (exact when both are integers). */
export function pyLess(a: JsonValue, b: JsonValue): boolean {
  const x = numeric(a);
  const y = numeric(b);
  if (x === undefined || y === undefined) return false;
  if (typeof x === 'bigint' || typeof y === 'bigint') {
    const xi = typeof x === 'bigint' || Number.isInteger(x);
    const yi = typeof y === 'bigint' || Number.isInteger(y);
    if (xi && yi) return BigInt(x) < BigInt(y);
    return Number(x) < Number(y);
  }
  return x < y;
}

/** Python `==` for the JSON values that can appear in combo lists. */
export function pyEquals(a: JsonValue, b: JsonValue): boolean {
  const x = numeric(a);
  const y = numeric(b);
  if (x !== undefined && y !== undefined) return !pyLess(x, y) && !pyLess(y, x) && !Number.isNaN(Number(x));
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  if (a === null || b === null) return a === b;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => pyEquals(v, b[i]));
  if (isJsonObject(a) && isJsonObject(b)) {
    const ka = keysOf(a);
    return ka.length === keysOf(b).length && ka.every((k) => k in b && pyEquals(a[k], b[k]));
  }
  return false;
}
