import { CliError, EXIT, exitForStatus } from './exit-codes.ts';
import type { Connection } from './connection.ts';

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Abort after this many ms (the default is the client's). Streams pass 0: no deadline. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The HTTP API as the CLI uses it: bearer auth, JSON, and every failure turned into a CliError with its exit code. */
export class ApiClient {
  constructor(
    readonly conn: Connection,
    private readonly timeoutMs: number,
  ) {}

  url(path: string, query: RequestOptions['query'] = {}): string {
    const u = new URL(this.conn.url + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  /** The raw response of a request that succeeded (2xx); anything else throws a CliError. */
  async fetch(path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${this.conn.token}`, ...opts.headers };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const timeout = opts.timeoutMs ?? this.timeoutMs;
    const signals = [opts.signal, timeout > 0 ? AbortSignal.timeout(timeout) : undefined].filter((s): s is AbortSignal => s !== undefined);
    let res: Response;
    try {
      res = await fetch(this.url(path, opts.query), {
        method: opts.method ?? 'GET',
        headers,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        ...(signals.length ? { signal: AbortSignal.any(signals) } : {}),
        redirect: 'error',
      });
    } catch (err) {
      throw this.unreachable(err, timeout);
    }
    if (res.ok) return res;
    throw await this.refusal(res);
  }

  /** A JSON answer, as the API sent it. */
  async json<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.fetch(path, opts);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(EXIT.apiError, `${this.conn.url} answered ${path} with something that is not JSON (${res.headers.get('content-type') ?? 'no content type'}): is it a Rotator API?`);
    }
  }

  /** Every item of a paged list, following `nextCursor` until it is null. */
  async *pages<T>(path: string, query: Record<string, string | number | boolean | undefined>): AsyncGenerator<T[]> {
    let cursor: string | undefined = typeof query.cursor === 'string' ? query.cursor : undefined;
    do {
      const page: { items: T[]; nextCursor: string | null } = await this.json(path, { query: { ...query, cursor } });
      yield page.items;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  unreachable(err: unknown, timeoutMs: number): CliError {
    const e = err as Error & { cause?: NodeJS.ErrnoException & { code?: string } };
    if (e.name === 'TimeoutError') return new CliError(EXIT.unreachable, `the Rotator API at ${this.conn.url} did not answer within ${Math.round(timeoutMs / 1000)} s (--timeout)`);
    if (e.name === 'AbortError') return new CliError(EXIT.interrupted, 'interrupted');
    const code = e.cause?.code;
    const why =
      code === 'ECONNREFUSED' ? 'connection refused (is the API running, and is the port right?)'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'unknown host'
          : code === 'ECONNRESET' ? 'the connection was reset'
            : code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' ? 'the connection timed out'
              : code?.startsWith('ERR_TLS') || code?.includes('CERT') ? `TLS failed (${code})`
                : e.cause?.message ?? e.message;
    return new CliError(EXIT.unreachable, `cannot reach the Rotator API at ${this.conn.url}: ${why}`);
  }

  /** One line from the API's `{error: {code, message, fields}}`, with the exit code of its status. */
  async refusal(res: Response): Promise<CliError> {
    const text = await res.text().catch(() => '');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const error = (body as { error?: { code?: string; message?: string; fields?: Array<{ path: string; message: string }> } } | undefined)?.error;
    const code = exitForStatus(res.status);
    if (!error?.message) {
      return new CliError(code === EXIT.notFound ? EXIT.apiError : code, `${this.conn.url} answered HTTP ${res.status}${text ? `: ${oneLine(text).slice(0, 200)}` : ''}${res.status === 404 ? ' (is it a Rotator API?)' : ''}`, body);
    }
    const fields = error.fields?.length ? ` (${error.fields.map((f) => `${f.path}: ${f.message}`).join('; ')})` : '';
    const hint =
      res.status === 401 ? ` (token from ${this.conn.tokenFrom || 'nowhere'})`
        : res.status === 429 && res.headers.get('retry-after') ? ` (retry after ${res.headers.get('retry-after')} s)`
          : '';
    return new CliError(code, `${oneLine(error.message)}${fields} [${error.code ?? res.status}]${hint}`, body);
  }
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
