import type { SecretStore } from '../../providers/secret-store.ts';
import type { TwilioKey, TwilioKeyOps } from '../../src/twilio/admin.ts';
import type { AuthTokenOps, RestrictedKeyOps } from '../../src/twilio/kinds.ts';
import type { RotationRecord, Step } from '../../src/domain/rotation.ts';
import type { CrashPoint } from '../crash-points.ts';

/**
 * A gate promote must pass besides the drain clock: e.g. "every consumer reports the new key".
 * Returns ready, or when to ask again and why not yet.
 */
export interface PromoteGate {
  readonly name: string;
  check(rec: RotationRecord, now: number): Promise<{ ready: true } | { ready: false; retryAt: number; reason: string }>;
}

/**
 * Decides when promote's drain is over, in place of the plain DRAIN_SECONDS clock: the consumer
 * gate (issue 15) ends it as soon as every live consumer reports the new key, or holds it past the
 * drain while one lags. `patch` is what the record should show meanwhile (k of n on the new key).
 */
export interface DrainGate {
  decide(rec: RotationRecord, now: number, drainEndsAt: number): Promise<{ ready: true; detail?: string; patch?: Partial<RotationRecord> } | { ready: false; retryAt: number; reason: string; patch?: Partial<RotationRecord> }>;
}

/** What a step may touch: narrow on purpose. */
export interface StepContext {
  twilio: TwilioKeyOps;
  /** Restricted keys and the Auth Token (src/twilio/kinds.ts); absent, those kinds fail with a permanent error. */
  credentialOps?: RestrictedKeyOps & AuthTokenOps;
  store: SecretStore;
  /** Where a managed credential's secret lives (SECRET_PATH_TEMPLATE with `{accountSid}` and `{name}`). */
  secretPath(accountSid: string, credential: string): string;
  keyNamePrefix: string;
  /** The configured parent (TWILIO_ACCOUNT_SID): only its active subaccounts are rotated. */
  parentAccountSid: string;
  /**
   * Which of `rotationIds` Rotator has records of for this subaccount, each with the name of the
   * credential it rotated (orphan cleanup deletes only keys of the credential being rotated).
   */
  knownRotations(accountSid: string, rotationIds: readonly string[]): Promise<ReadonlyMap<string, string>>;
  /** Keys with Rotator's prefix that Rotator did not provably create: left in place, reported (log, metric). */
  reportSprawl?(rec: RotationRecord, keys: readonly TwilioKey[]): void;
  drainMs: number;
  gates: readonly PromoteGate[];
  /** The consumer gate: absent, promote waits out the drain alone. */
  drainGate?: DrainGate;
  now(): number;
  crash: CrashPoint;
}

/** A step either moves the record on, or asks to be woken later (the drain). */
export type StepOutcome =
  | { kind: 'advance'; patch: Partial<RotationRecord>; next: Step; detail?: string }
  | { kind: 'wait'; until: number; reason: string; patch?: Partial<RotationRecord> };

export { keyName } from '../../src/domain/rotation.ts';
