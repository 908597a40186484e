// The dashboard's calls to the API: same origin, the session cookie, and the CSRF token on every
// request that changes something. The token lives in this module's memory only (never in web
// storage); the API token the operator pasted is sent once, in a POST body, and never kept.

let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error ? body.error : {};
    const fields = Array.isArray(error.fields) ? error.fields.map((f) => `${f.path}: ${f.message}`).join('; ') : '';
    super(error.message ? `${error.message}${fields ? ` (${fields})` : ''}` : `the API answered ${status}`);
    this.status = status;
    this.code = error.code || null;
  }
}

export async function api(method, path, body, accept = 'application/json') {
  const headers = { accept };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (res.status === 204) return null;
  const text = await res.text();
  if (accept !== 'application/json' && res.ok) return text;
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** A query string of the set values only. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
