import twilio from 'twilio';
import type IRequestClient from 'twilio/lib/base/RequestClient.js';
import { backoffDelay, sleep } from '../domain/backoff.ts';
import type { ConcurrencyGate } from './gate.ts';
import { isNetworkError, isTransientStatus } from './errors.ts';

type RequestOptions = IRequestClient.RequestOptions;
interface HttpResponse {
  statusCode: number;
  body: unknown;
  headers: unknown;
}

export interface TwilioCallObserver {
  /** One HTTP exchange with Twilio: status, or 0 when no answer came. No URIs with secrets, no bodies. */
  (call: { method: string; status: number; errorCode?: number; durationMs: number; retried: boolean }): void;
}

export interface TwilioHttpOptions {
  /** Replace https://{api,iam,accounts}.twilio.com with this origin (TWILIO_BASE_URL). */
  baseUrl?: string;
  timeoutMs: number;
  gate: ConcurrencyGate;
  maxAttempts?: number;
  observe?: TwilioCallObserver;
}

const TWILIO_ORIGIN = /^https:\/\/[a-z0-9.-]*twilio\.com(?::443)?/;

/**
 * twilio-node's pluggable httpClient: base-URL rewrite, the global concurrency cap, and retries
 * that twilio-node lacks (its autoRetry covers 429 only and is bypassed by a custom client).
 *
 * What is retried here: 429 always (Twilio never processed it); other transient failures only for
 * reads and deletes. A POST that failed with a 5xx or a reset may have been processed (a key may
 * exist), so it is NOT repeated here: the step that issued it re-runs from the top, and its first
 * act is to find keys named for its rotation and reconcile them.
 */
export function createTwilioHttpClient(opts: TwilioHttpOptions): { request(o: RequestOptions): Promise<HttpResponse> } {
  const inner = new twilio.RequestClient({ timeout: opts.timeoutMs, keepAlive: true, autoRetry: false });
  const maxAttempts = opts.maxAttempts ?? 5;
  const rewrite = (uri: string): string => (opts.baseUrl ? uri.replace(TWILIO_ORIGIN, opts.baseUrl) : uri);

  return {
    async request(o: RequestOptions): Promise<HttpResponse> {
      const method = String(o.method).toUpperCase();
      const idempotent = method === 'GET' || method === 'DELETE';
      for (let attempt = 0; ; attempt++) {
        const release = await opts.gate.acquire();
        const started = performance.now();
        let response: HttpResponse | undefined;
        let failure: unknown;
        try {
          response = (await inner.request({ ...o, uri: rewrite(o.uri), timeout: o.timeout ?? opts.timeoutMs })) as HttpResponse;
        } catch (err) {
          failure = err;
        } finally {
          release();
        }
        const status = response?.statusCode ?? 0;
        const retryable =
          attempt + 1 < maxAttempts &&
          (status === 429 || (idempotent && ((response && isTransientStatus(status)) || (failure !== undefined && isNetworkError(failure)))));
        opts.observe?.({ method, status, errorCode: errorCodeOf(response), durationMs: performance.now() - started, retried: retryable });
        if (!retryable) {
          if (failure !== undefined) throw scrub(failure);
          return response as HttpResponse;
        }
        await sleep(backoffDelay(attempt, 100, 3_000));
      }
    },
  };
}

function errorCodeOf(response: HttpResponse | undefined): number | undefined {
  if (!response || response.statusCode < 400) return undefined;
  try {
    const body = typeof response.body === 'string' ? JSON.parse(response.body) : response.body;
    return typeof (body as { code?: unknown })?.code === 'number' ? (body as { code: number }).code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * axios errors carry the request config, including the Basic-auth password: keep only what
 * classification needs so nothing downstream can log a credential.
 */
function scrub(err: unknown): Error {
  const e = err as { code?: string; message?: string };
  const clean = new Error(e?.message ?? 'Twilio request failed') as Error & { code?: string };
  if (e?.code) clean.code = e.code;
  return clean;
}
