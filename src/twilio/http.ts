import { Agent, type Dispatcher } from 'undici';
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
 * The transport is undici's keep-alive pools rather than twilio-node's axios-based RequestClient:
 * at fleet scale axios' per-request config merging and interceptors were the largest single cost
 * of a rotation after the store (and node:http's request and response objects, the next
 * transport, most of what remained). Bodies come back as text; twilio-node parses them (it
 * accepts a string body wherever it reads one).
 *
 * What is retried here: 429 always (Twilio never processed it); other transient failures only for
 * reads and deletes. A POST that failed with a 5xx or a reset may have been processed (a key may
 * exist), so it is NOT repeated here: the step that issued it re-runs from the top, and its first
 * act is to find keys named for its rotation and reconcile them.
 */
export function createTwilioHttpClient(opts: TwilioHttpOptions): { request(o: RequestOptions): Promise<HttpResponse> } {
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
          response = await send(o, rewrite(o.uri), o.timeout ?? opts.timeoutMs);
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

/**
 * One keep-alive connection pool per origin (Twilio's api, iam and accounts hosts, or the
 * emulator), up to 512 connections each. undici rather than node:http: per exchange it does
 * without a ClientRequest, an IncomingMessage and their stream machinery and events, which were
 * most of the worker's own cost of a Twilio call.
 */
const dispatcher = new Agent({ connections: 512, keepAliveTimeout: 4_000 });

/** One exchange, as twilio-node's RequestClient makes it: Basic auth, form or JSON body, no redirects. */
async function send(o: RequestOptions, uri: string, timeoutMs: number): Promise<HttpResponse> {
  const url = new URL(uri);
  if (o.params) for (const [k, v] of formPairs(o.params as Record<string, unknown>)) url.searchParams.append(k, v);
  const headers: Record<string, string> = { ...(o.headers as Record<string, string> | undefined) };
  // Hop-by-hop: the pool manages the connection itself (undici refuses the header).
  delete headers.Connection;
  if (o.username && o.password) headers.Authorization = `Basic ${Buffer.from(`${o.username}:${o.password}`).toString('base64')}`;
  let body: string | undefined;
  if (o.data) {
    const type = headers['Content-Type'];
    if (type === 'application/x-www-form-urlencoded') body = new URLSearchParams(formPairs(o.data as Record<string, unknown>)).toString();
    else if (type === 'application/json') body = JSON.stringify(o.data);
  }
  try {
    // The timeouts bound each wait for the answer's headers, then for each piece of its body.
    return await exchange({ origin: url.origin, path: url.pathname + url.search, method: o.method.toUpperCase() as Dispatcher.HttpMethod, headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  } catch (err) {
    throw asNetworkError(err, timeoutMs);
  }
}

/**
 * The request through undici's dispatch with a handler that gathers the answer: request()'s
 * response stream (a Readable, its events and async-resource bookkeeping per call) is more work
 * than a Twilio answer of a few hundred bytes needs.
 */
function exchange(opts: Dispatcher.DispatchOptions): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    let statusCode = 0;
    let headers: unknown = {};
    const chunks: Buffer[] = [];
    dispatcher.dispatch(opts, {
      // Present so undici takes this for a handler of its current interface.
      onRequestStart() {},
      // Called again for the final answer after any 1xx: the last one is the answer.
      onResponseStart(_controller, status, h) {
        statusCode = status;
        headers = h;
      },
      onResponseData(_controller, chunk) {
        chunks.push(chunk);
      },
      onResponseEnd() {
        resolve({ statusCode, headers, body: Buffer.concat(chunks).toString('utf8') });
      },
      onResponseError(_controller, err) {
        reject(err);
      },
    });
  });
}

/**
 * undici's transport errors under the codes node:http gives (isNetworkError, classification and
 * the retry rules know those): its timeouts as ETIMEDOUT, a connection closed under a request as
 * ECONNRESET. Connect errors (ECONNREFUSED…) already carry the system's code.
 */
function asNetworkError(err: unknown, timeoutMs: number): unknown {
  const code = (err as { code?: string })?.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return Object.assign(new Error(`timeout of ${timeoutMs}ms exceeded`), { code: 'ETIMEDOUT' });
  }
  if (code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED') return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  return err;
}

/** Form fields as twilio-node sends them: arrays repeat their key, undefined is left out. */
function formPairs(data: Record<string, unknown>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(data)) {
    if (v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) if (item !== undefined) out.push([k, String(item)]);
  }
  return out;
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
 * Transport errors may carry request details (headers with the Basic-auth password): keep only
 * what classification needs so nothing downstream can log a credential.
 */
function scrub(err: unknown): Error {
  const e = err as { code?: string; message?: string };
  const clean = new Error(e?.message ?? 'Twilio request failed') as Error & { code?: string };
  if (e?.code) clean.code = e.code;
  return clean;
}
