/**
 * Validating Twilio webhooks (`X-Twilio-Signature`) in an application whose account Auth Token
 * Rotator rotates. Twilio signs with the primary token; during a rotation the store's current token
 * is the new one from operationalize on, while Twilio keeps signing with the old one until
 * promotion. So a request is valid when it is signed with the current or, while a rotation is in
 * flight (the store still has a previous stage), the previous token.
 *
 * The signature itself is checked by twilio-node's own `validateRequest` (form posts) and
 * `validateRequestWithBody` (JSON bodies, with `bodySHA256` in the URL): never a hand-written HMAC.
 */
import twilio from 'twilio';

/** The tokens a signature may be made with: the store's current one, and its previous one while a rotation is in flight. */
export interface WebhookTokens {
  current: string;
  previous?: string;
}

export interface TwilioWebhookRequest {
  /** The full URL Twilio requested, with its query string (as configured at Twilio: scheme, host, port). */
  url: string;
  /** The `X-Twilio-Signature` header. */
  signature: string | undefined;
  /** Form-encoded POST parameters (or {} for a GET). */
  params?: Record<string, unknown>;
  /** A JSON body as received (raw text), validated against the URL's `bodySHA256`. */
  body?: string;
}

export type WebhookVerdict = { valid: true; signedWith: 'current' | 'previous' } | { valid: false; reason: string };

/**
 * Whether `req` was signed by Twilio with the current or the previous Auth Token. Give either
 * `params` (form posts) or `body` (JSON bodies).
 */
export function validateTwilioRequest(tokens: WebhookTokens, req: TwilioWebhookRequest): WebhookVerdict {
  if (!req.signature) return { valid: false, reason: 'no X-Twilio-Signature header' };
  const candidates: Array<['current' | 'previous', string]> = [['current', tokens.current]];
  if (tokens.previous && tokens.previous !== tokens.current) candidates.push(['previous', tokens.previous]);
  for (const [which, token] of candidates) {
    const ok = req.body !== undefined ? twilio.validateRequestWithBody(token, req.signature, req.url, req.body) : twilio.validateRequest(token, req.signature, req.url, req.params ?? {});
    if (ok) return { valid: true, signedWith: which };
  }
  return { valid: false, reason: tokens.previous ? 'signed with neither the current nor the previous Auth Token' : 'not signed with the current Auth Token' };
}

/** What an entry of Rotator's store holds for an Auth Token credential (the stored JSON `{accountSid, authToken}` of each stage). */
export interface StoredAuthTokenEntry {
  current?: { accountSid: string; authToken: string };
  previous?: { accountSid: string; authToken: string };
}

/** A stage as Rotator's store providers return it (`SecretStore.read`): the token is `apiKeySecret`. */
interface ProviderStage {
  credential: { apiKeySecret: { reveal(): string } };
}

/**
 * The tokens to validate with, from the store entry of an Auth Token credential — the stored JSON
 * stages, or what `SecretStore.read` returns. The previous stage exists only while a rotation is
 * in flight (delete-old drops it after promotion).
 */
export function webhookTokens(entry: StoredAuthTokenEntry | { current?: ProviderStage; previous?: ProviderStage }): WebhookTokens {
  const token = (stage: unknown): string | undefined => {
    if (!stage || typeof stage !== 'object') return undefined;
    if ('authToken' in stage && typeof stage.authToken === 'string') return stage.authToken;
    if ('credential' in stage) return (stage as ProviderStage).credential.apiKeySecret.reveal();
    return undefined;
  };
  const current = token(entry.current);
  if (!current) throw new TypeError('the store entry holds no current Auth Token (is this an auth-token credential?)');
  const previous = token(entry.previous);
  return { current, ...(previous ? { previous } : {}) };
}
