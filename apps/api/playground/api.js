// The API as the page uses it: every call same-origin, with the key from this tab as a Bearer token.

const KEY_STORAGE = 'fictures.playground.api_key';

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) ?? '';
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** An answer of the API that is not 2xx, with the error body's code, message and details. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** [{field, message}] for the fields this error concerns (validation_failed lists one per field; image errors name one). */
  fieldProblems() {
    if (Array.isArray(this.details)) return this.details.filter((d) => d && typeof d.field === 'string');
    if (this.details && typeof this.details.field === 'string') return [{ field: this.details.field, message: this.message }];
    return [];
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function fail(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const e = body?.error;
  if (e && typeof e.message === 'string') return new ApiError(res.status, e.code ?? 'error', e.message, e.details);
  return new ApiError(res.status, 'http_error', `The server answered ${res.status} ${res.statusText}`.trim());
}

async function call(method, path, { json, body, type, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.headers['Content-Type'] = type;
    init.body = body;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network_error', 'The API did not answer (network error)');
  }
  if (!res.ok) throw await fail(res);
  return res;
}

export const api = {
  async models() {
    const body = await (await call('GET', '/api/v1/models')).json();
    return body.data;
  },
  async upload(blob) {
    return (await call('POST', '/api/v1/uploads', { body: blob, type: blob.type || 'application/octet-stream' })).json();
  },
  async submit(params) {
    return (await call('POST', '/api/v1/images/jobs', { json: params })).json();
  },
  async job(id, { waitSeconds, signal } = {}) {
    const q = waitSeconds ? `?wait=${waitSeconds}` : '';
    return (await call('GET', `/api/v1/images/jobs/${encodeURIComponent(id)}${q}`, { signal })).json();
  },
  async cancel(id) {
    return (await call('DELETE', `/api/v1/images/jobs/${encodeURIComponent(id)}`)).json();
  },
  /** The image bytes as a Blob: an <img> cannot send the key, so the page fetches and shows a blob: URL. */
  async image(url, signal) {
    return (await call('GET', url, { signal })).blob();
  },
  /**
   * Follows a job's server-sent events (EventSource cannot send a key, so fetch + a stream reader).
   * Calls onEvent({event, data}) per event; resolves when the server ends the stream.
   */
  async events(id, onEvent, signal) {
    const res = await call('GET', `/api/v1/images/jobs/${encodeURIComponent(id)}/events`, { signal });
    if (!res.body) throw new ApiError(0, 'no_stream', 'This browser cannot read a response stream');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = parseEvent(block);
        if (ev) onEvent(ev);
      }
    }
  },
};

/** One SSE block → {event, data}; comments (heartbeats) → null. */
export function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (name === 'event') event = value;
    else if (name === 'data') data.push(value);
  }
  if (!data.length) return null;
  try {
    return { event, data: JSON.parse(data.join('\n')) };
  } catch {
    return { event, data: data.join('\n') };
  }
}
