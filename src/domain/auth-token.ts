/**
 * Auth Token rotation is the most guarded operation: the token authenticates every integration of
 * an account that does not use API keys and signs every webhook (X-Twilio-Signature), so a mistake
 * breaks them all at once. Pure rules; the service applies them to every start, whoever asks.
 *
 *  - off unless an admin enabled it for the account (PATCH /v1/accounts/{sid} {authTokenRotation: true});
 *  - from the API: the admin role, and a confirmation that repeats the account SID;
 *  - from a schedule or a batch: only when the policy that applies says `allowAuthToken: true`;
 *  - never by the demo.
 */
import type { CredentialKind } from './credential.ts';

export interface AuthTokenStart {
  kind: CredentialKind;
  accountSid: string;
  trigger: 'api' | 'schedule' | 'demo' | 'batch';
  /** The account's switch (PATCH /v1/accounts/{sid} authTokenRotation). */
  enabled: boolean;
  /** Whether the caller holds the admin role (API starts). */
  admin?: boolean;
  /** What the caller typed to confirm: must equal the account SID. */
  confirm?: string;
  /** The policy that applies allows scheduled or batch Auth Token rotation. */
  policyAllows?: boolean;
  dryRun?: boolean;
}

export interface Refusal {
  /** HTTP status the API answers with. */
  status: 400 | 403 | 409 | 422;
  code: string;
  message: string;
}

/** Why this start of an Auth Token rotation is refused, or undefined when it may go ahead (or is not one). */
export function authTokenRefusal(s: AuthTokenStart): Refusal | undefined {
  if (s.kind !== 'auth-token') return undefined;
  const sid = s.accountSid;
  if (!s.enabled) {
    return { status: 409, code: 'auth_token_rotation_disabled', message: `Auth Token rotation is off for ${sid}: an admin must first enable it with PATCH /v1/accounts/${sid} {"authTokenRotation": true}` };
  }
  if (s.trigger === 'demo') return { status: 422, code: 'auth_token_not_scheduled', message: `the demo never rotates an Auth Token (${sid})` };
  if (s.trigger === 'schedule' || s.trigger === 'batch') {
    if (!s.policyAllows) {
      return { status: 422, code: 'auth_token_not_scheduled', message: `a ${s.trigger} never starts an Auth Token rotation of ${sid} unless its policy says allowAuthToken: true` };
    }
    return undefined;
  }
  if (!s.admin) return { status: 403, code: 'forbidden', message: `rotating the Auth Token of ${sid} needs the admin role` };
  // A dry run changes nothing: it lists what depends on the token, so it needs no confirmation.
  if (!s.dryRun && s.confirm !== sid) {
    return {
      status: 400,
      code: 'confirmation_required',
      message: `rotating the Auth Token of ${sid} breaks every integration that has not re-read it within the drain: repeat the account SID in "confirm" ("confirm": "${sid}") to go ahead; a dry run ("dryRun": true) lists what depends on the token`,
    };
  }
  return undefined;
}

/** What breaks when an account's Auth Token changes: listed by the dry run and the API's answer. */
export function authTokenDependents(accountSid: string): string[] {
  return [
    `every application that authenticates as ${accountSid} with its Auth Token (it must re-read the store within the drain)`,
    `webhook signature validation (X-Twilio-Signature) for ${accountSid}: use validateTwilioRequest (rotator/client/webhook), which accepts the previous token until promotion`,
    `Rotator's Main-key fallback for ${accountSid} (the subaccount's token, used when the parent's Main key is refused): re-read after promotion`,
    'Twilio Functions or Services that embed the token: they take about a minute to pick up a change',
  ];
}
