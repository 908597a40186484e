import { PermanentError, RotatorError, TransientError } from '../domain/errors.ts';

/** Twilio's JSON error, as twilio-node's RestException carries it. */
interface TwilioRestError {
  status?: number;
  code?: number;
  message?: string;
}

const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'ECONNABORTED', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

export function isTransientStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** A network-level failure (no HTTP answer): reset, refused, timed out. */
export function isNetworkError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string }; message?: string } | null;
  if (!e) return false;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  if (e.cause?.code && NETWORK_CODES.has(e.cause.code)) return true;
  return /socket hang up|timeout of \d+ms exceeded|aborted/i.test(e.message ?? '');
}

/**
 * Twilio failure → RotatorError. `who` names the credential that was used so the message says what
 * the operator must fix. 429, 5xx, resets and timeouts are transient; 401/403/404 are permanent.
 */
export function classifyTwilioError(err: unknown, what: string, who: 'admin' | 'new key' = 'admin'): RotatorError {
  if (err instanceof RotatorError) return err;
  const rest = err as TwilioRestError;
  if (typeof rest?.status === 'number') {
    const tag = `HTTP ${rest.status}${rest.code ? `, Twilio error ${rest.code}` : ''}`;
    if (rest.status === 429) return new TransientError('twilio_throttled', `${what}: Twilio refused the request as over the account's concurrency limit (${tag}); retrying`);
    if (rest.status >= 500) return new TransientError('twilio_unavailable', `${what}: Twilio answered ${tag}; retrying`);
    if (rest.status === 401) {
      return who === 'admin'
        ? new PermanentError('twilio_admin_unauthorized', `${what}: Twilio rejected the admin credential (${tag}). Check TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or TWILIO_API_KEY/TWILIO_API_SECRET (a Main key); it may have been revoked or the account suspended or closed`)
        : new PermanentError('twilio_new_key_unauthorized', `${what}: Twilio rejected the newly created key (${tag})`);
    }
    if (rest.status === 403) return new PermanentError('twilio_forbidden', `${what}: Twilio forbids this for the admin credential (${tag}); use the Auth Token or a Main key`);
    if (rest.status === 404) return new PermanentError('twilio_not_found', `${what}: not found at Twilio (${tag}); the subaccount may not exist or be closed`);
    return new PermanentError('twilio_rejected', `${what}: Twilio answered ${tag}`);
  }
  if (isNetworkError(err)) return new TransientError('twilio_network', `${what}: no answer from Twilio (${(err as { code?: string }).code ?? 'network error'}); retrying`);
  return new PermanentError('twilio_error', `${what}: ${(err as Error)?.message ?? String(err)}`);
}
