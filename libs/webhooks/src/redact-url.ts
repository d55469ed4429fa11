export const REDACTED = 'REDACTED';

/** What redactUrl shows for a string that is not a URL: the input itself could be a secret. */
export const UNPARSABLE_URL = '[invalid url]';

/**
 * A URL safe to show on the job resource and in delivery logs: every query value replaced by
 * REDACTED (names kept), userinfo and fragment dropped. Query strings are where webhook tokens
 * usually travel; a secret in the path is not recognisable and stays.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return UNPARSABLE_URL;
  }
  u.username = '';
  u.password = '';
  u.hash = '';
  const parts = u.search
    .slice(1)
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      // A bare `?abcdef` may be the token itself.
      return eq === -1 ? REDACTED : `${p.slice(0, eq)}=${REDACTED}`;
    });
  // Also drops an empty `?`.
  u.search = parts.length ? `?${parts.join('&')}` : '';
  return u.toString();
}
