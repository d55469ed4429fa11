import http from 'node:http';

export interface SseEvent {
  event: string;
  data: unknown;
}

/** Reads a server-sent event stream until the server closes it (or timeoutMs). */
export function readSse(url: string, timeoutMs = 20_000, onEvent?: (e: SseEvent) => void): Promise<{ status: number; events: SseEvent[]; comments: number }> {
  return new Promise((resolve, reject) => {
    const events: SseEvent[] = [];
    let comments = 0;
    const req = http.get(url, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let idx;
        while ((idx = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, idx);
          buf = buf.slice(idx + 2);
          if (block.startsWith(':')) {
            comments++;
            continue;
          }
          const ev = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(block)?.[1];
          const e = { event: ev, data: data ? JSON.parse(data) : null };
          events.push(e);
          onEvent?.(e);
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, events, comments });
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`SSE stream did not end within ${timeoutMs} ms; got ${events.map((e) => e.event).join(',')}`));
    }, timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
