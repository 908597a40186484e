import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A secret value (API key secret, auth token, store token). It prints as `[redacted]` through
 * every path a value usually leaks by — String(), template literals, JSON.stringify,
 * util.inspect / console.log / pino — so only an explicit `reveal()` yields the plain text.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    if (typeof value !== 'string' || value.length === 0) throw new TypeError('Secret needs a non-empty string');
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** The credential every store holds for a subaccount: the shape of AWS's managed `TwilioApiKey` secret. */
export interface TwilioApiKeyCredential {
  accountSid: string;
  apiKeySid: string;
  apiKeySecret: Secret;
}

/** The JSON written to a store (SPEC.md "Stored secret format"). */
export function serializeCredential(c: TwilioApiKeyCredential): string {
  return JSON.stringify({ accountSid: c.accountSid, apiKeySid: c.apiKeySid, apiKeySecret: c.apiKeySecret.reveal() });
}

export function credentialFromObject(raw: unknown): TwilioApiKeyCredential {
  const o = raw as Record<string, unknown> | null;
  if (!o || typeof o.accountSid !== 'string' || typeof o.apiKeySid !== 'string' || typeof o.apiKeySecret !== 'string') {
    throw new TypeError('stored secret lacks accountSid, apiKeySid or apiKeySecret');
  }
  return { accountSid: o.accountSid, apiKeySid: o.apiKeySid, apiKeySecret: new Secret(o.apiKeySecret) };
}

export function plainCredential(c: TwilioApiKeyCredential): Record<string, string> {
  return { accountSid: c.accountSid, apiKeySid: c.apiKeySid, apiKeySecret: c.apiKeySecret.reveal() };
}
