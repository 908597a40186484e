export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
}

/**
 * The operator's side of the run: plain HTTP against the API process, which the run kills now and
 * then. A request that gets no answer (connection refused or reset, 5xx while Redis is away) is
 * tried again until `deadline`; an HTTP answer of 4xx is the answer.
 */
export class ChaosApi {
  /** Requests that had to be repeated because the API (or Redis behind it) was away. */
  retries = 0;

  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async request<T = Record<string, unknown>>(method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 60_000): Promise<ApiAnswer<T>> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${this.baseUrl}${path}`, {
          method,
          headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(5_000),
        });
        const text = await res.text();
        if (res.status >= 500 && Date.now() < deadline) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
        return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
      } catch (err) {
        if (Date.now() >= deadline) throw new Error(`${method} ${path}: no answer for ${timeoutMs} ms (${(err as Error).message})`);
        this.retries++;
        await new Promise((r) => setTimeout(r, Math.min(1_000, 100 * 2 ** Math.min(attempt, 4))));
      }
    }
  }
}
