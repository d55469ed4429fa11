/** One part of a multipart/form-data body. */
export interface FormPart {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer;
}

/**
 * Enough of RFC 7578 for an image upload: the boundary, each part's disposition and type, its bytes.
 * The body is already whole in memory (capped by the route's raw parser), so no streaming is needed.
 */
export function parseMultipart(body: Buffer, contentType: string | undefined): FormPart[] | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  if (!m) return undefined;
  const delimiter = Buffer.from(`--${m[1] ?? m[2]}`);
  const next = Buffer.concat([Buffer.from('\r\n'), delimiter]);
  const parts: FormPart[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) return undefined;
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 2).toString('latin1') === '--') return parts;
    pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd < 0) return undefined;
    const headers = body.subarray(pos, headerEnd).toString('utf8');
    const end = body.indexOf(next, headerEnd + 4);
    if (end < 0) return undefined;
    const disposition = /content-disposition:[^\r\n]*/i.exec(headers)?.[0] ?? '';
    const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
    if (name !== undefined) {
      parts.push({
        name,
        filename: /\bfilename="([^"]*)"/i.exec(disposition)?.[1],
        contentType: /content-type:\s*([^\r\n;]+)/i.exec(headers)?.[1]?.trim(),
        data: body.subarray(headerEnd + 4, end),
      });
    }
    pos = end + 2;
  }
}
