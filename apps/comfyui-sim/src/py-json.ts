/**
 * JSON the way ComfyUI's Python side reads and writes it.
 *
 * - Parsing keeps the key order of every object (Python dicts do; JS objects put integer-like keys
 *   such as node ids "3", "37" first), keeps integers above 2^53 exact as bigint, and accepts
 *   NaN / Infinity like `json.loads`.
 * - Dumping uses `json.dumps` defaults: ", " and ": " separators, ASCII-only output, floats that
 *   the server produced as Python floats (PyFloat) written as `1.0`.
 */

/** A number the Python server holds as a float (written `1.0`, never `1`). */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type JsonPrimitive = null | boolean | number | bigint | string;
export type JsonValue = JsonPrimitive | PyFloat | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

const KEY_ORDER = new WeakMap<object, string[]>();

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof PyFloat);
}

/** Keys of an object in Python insertion order (falls back to JS order for objects we built). */
export function keysOf(obj: JsonObject): string[] {
  const order = KEY_ORDER.get(obj);
  const own = Object.keys(obj);
  if (!order) return own;
  const seen = new Set<string>();
  const out: string[] = [];
  for (const k of order) {
    if (Object.prototype.hasOwnProperty.call(obj, k) && !seen.has(k)) {
      out.push(k);
      seen.add(k);
    }
  }
  for (const k of own) if (!seen.has(k)) out.push(k);
  return out;
}

/** Builds an object whose key order is the order of `entries` (like a Python dict literal). */
export function orderedObject(entries: Iterable<[string, JsonValue]>): JsonObject {
  const obj: JsonObject = {};
  const order: string[] = [];
  for (const [k, v] of entries) {
    if (!Object.prototype.hasOwnProperty.call(obj, k)) order.push(k);
    assign(obj, k, v);
  }
  KEY_ORDER.set(obj, order);
  return obj;
}

/** Plain assignment, except that a "__proto__" key becomes an own property (as in a Python dict). */
function assign(obj: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  else obj[key] = value;
}

/** Appends or replaces a key, keeping Python dict ordering semantics. */
export function setKey(obj: JsonObject, key: string, value: JsonValue): void {
  if (!Object.prototype.hasOwnProperty.call(obj, key)) {
    const order = KEY_ORDER.get(obj);
    if (order) order.push(key);
  }
  assign(obj, key, value);
}

export function deleteKey(obj: JsonObject, key: string): void {
  delete obj[key];
}

/** `copy.deepcopy` for JSON data, keeping key order. */
export function deepCopy<T extends JsonValue>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => deepCopy(x)) as T;
  if (isJsonObject(v)) return orderedObject(keysOf(v).map((k) => [k, deepCopy(v[k])])) as T;
  return v;
}

export class JsonParseError extends Error {}

/** `json.loads`: standard JSON plus NaN/Infinity/-Infinity, big integers exact, key order kept. */
export function parseJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;
  const fail = (what: string): never => {
    throw new JsonParseError(`${what}: line 1 column ${i + 1} (char ${i})`);
  };
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const plainRun = /[^"\\\u0000-\u001f]*/y;
  const numRe = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;

  const parseString = (): string => {
    i++; // opening quote
    let out = '';
    for (;;) {
      plainRun.lastIndex = i;
      const m = plainRun.exec(text);
      if (m && m[0].length) {
        out += m[0];
        i += m[0].length;
      }
      if (i >= n) fail('Unterminated string starting at');
      const c = text[i];
      if (c === '"') {
        i++;
        return out;
      }
      if (c === '\\') {
        const e = text[i + 1];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const hex = text.slice(i + 2, i + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('Invalid \\uXXXX escape');
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            fail('Invalid \\escape');
        }
        i += 2;
        continue;
      }
      fail('Invalid control character at');
    }
  };

  const parseValue = (): JsonValue => {
    ws();
    if (i >= n) fail('Expecting value');
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: [string, JsonValue][] = [];
      ws();
      if (text[i] === '}') {
        i++;
        return orderedObject(entries);
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('Expecting property name enclosed in double quotes');
        const key = parseString();
        ws();
        if (text[i] !== ':') fail("Expecting ':' delimiter");
        i++;
        entries.push([key, parseValue()]);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return orderedObject(entries);
        }
        fail("Expecting ',' delimiter");
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue());
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("Expecting ',' delimiter");
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    if (text.startsWith('NaN', i)) { i += 3; return NaN; }
    if (text.startsWith('Infinity', i)) { i += 8; return Infinity; }
    if (text.startsWith('-Infinity', i)) { i += 9; return -Infinity; }
    numRe.lastIndex = i;
    const m = numRe.exec(text);
    if (!m) return fail('Expecting value');
    i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const asNum = Number(m[0]);
      return Number.isSafeInteger(asNum) ? asNum : BigInt(m[0]);
    }
    return Number(m[0]);
  };

  const value = parseValue();
  ws();
  if (i !== n) fail('Extra data');
  return value;
}

const NON_ASCII = /[\u0080-\uffff]/g;

function dumpString(s: string): string {
  return JSON.stringify(s).replace(NON_ASCII, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Python `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mant, expStr] = Math.abs(x).toExponential().split('e');
  const digits = mant.replace('.', '');
  const exp = Number(expStr);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
    const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
    const frac = digits.slice(exp + 1) || '0';
    return `${sign}${intPart}.${frac}`;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const e = Math.abs(exp).toString().padStart(2, '0');
  return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
}

function dumpNumber(v: number, asFloat: boolean): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  if (asFloat) return pyFloatRepr(v);
  if (Number.isInteger(v)) return Math.abs(v) < 1e21 ? String(v) : BigInt(v).toString();
  return pyFloatRepr(v);
}

/** `json.dumps(value)` with Python's default formatting. */
export function pyDumps(v: JsonValue | undefined): string {
  if (v === null || v === undefined) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'number') return dumpNumber(v, false);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return dumpString(v);
  if (v instanceof PyFloat) return dumpNumber(v.value, true);
  if (Array.isArray(v)) return '[' + v.map((x) => pyDumps(x)).join(', ') + ']';
  const parts: string[] = [];
  for (const k of keysOf(v)) {
    const val = v[k];
    if (val === undefined) continue;
    parts.push(`${dumpString(k)}: ${pyDumps(val)}`);
  }
  return '{' + parts.join(', ') + '}';
}

/** Converts server-side values to plain JS numbers (PyFloat / bigint unwrapped, lossy for bigint). */
export function toNumber(v: JsonValue): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof PyFloat) return v.value;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return NaN;
}
