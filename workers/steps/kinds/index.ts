/**
 * One strategy per credential kind: what each of the four steps (and undo, dry run) does at Twilio
 * for that kind. The steps themselves (create-secondary.ts, …) keep the order, the store writes
 * and the crash points, which are the same for every kind; only these acts differ.
 *
 *  - api-key: v2010 Standard keys (api-key.ts).
 *  - restricted-key: IAM v1 restricted keys; the new key copies the old key's policy exactly (restricted-key.ts).
 *  - auth-token: the account's Auth Token through Accounts v1 secondary/promote (auth-token.ts).
 */
import type { SecretEntry } from '../../../providers/secret-store.ts';
import type { CredentialKind, RotationRecord } from '../../../src/domain/rotation.ts';
import type { TwilioApiKeyCredential } from '../../../src/domain/secret.ts';
import type { TwilioKey } from '../../../src/twilio/admin.ts';
import type { StepContext } from '../context.ts';
import { apiKeySteps } from './api-key.ts';
import { authTokenSteps } from './auth-token.ts';
import { restrictedKeySteps } from './restricted-key.ts';

export interface KindSteps {
  /** What the new credential is called in messages: "key", "Auth Token". */
  readonly noun: string;
  /**
   * The old credential's identifier when the store entry is empty: null (a bootstrap: steps 1–2
   * only) for keys; for the Auth Token, the account's live primary, which must still be promoted away.
   */
  bootstrapOld(ctx: StepContext, rec: RotationRecord): Promise<string | null>;
  /**
   * Before creating: remove at Twilio what an interrupted run of this credential left behind (a
   * key whose secret was lost, a secondary token no stage holds). Returns keys found with Rotator's
   * prefix that Rotator did not create (sprawl: reported, never deleted).
   */
  cleanup(ctx: StepContext, rec: RotationRecord, entry: SecretEntry): Promise<TwilioKey[]>;
  /** Create the new credential at Twilio; the caller stores it as pending before anything else. */
  create(ctx: StepContext, rec: RotationRecord, oldId: string | null): Promise<TwilioApiKeyCredential>;
  /** Prove the new credential works (retrying a just-created one's 401 briefly); returns a note for the history. */
  verify(ctx: StepContext, rec: RotationRecord, credential: TwilioApiKeyCredential): Promise<string>;
  /** In promote, after the drain, the gates and the store check: make the new credential the primary at Twilio. Idempotent. */
  makePrimary(ctx: StepContext, rec: RotationRecord, current: TwilioApiKeyCredential, entry: SecretEntry): Promise<string>;
  /** In delete-old: retire the old credential at Twilio. Idempotent. */
  retireOld(ctx: StepContext, rec: RotationRecord, oldId: string, entry: SecretEntry): Promise<string>;
  /**
   * Before an undo touches the store: throws when the rotation can no longer be undone (the Auth
   * Token was promoted, so the old token is dead and must never be made current again).
   */
  assertUndoable?(ctx: StepContext, rec: RotationRecord): Promise<void>;
  /** Undo: remove this rotation's new credential at Twilio, unless a store stage holds it. */
  discardNew(ctx: StepContext, rec: RotationRecord, held: ReadonlySet<string>): Promise<string>;
  /** What a dry run reports (it changes nothing). */
  dryRun(ctx: StepContext, rec: RotationRecord, entry: SecretEntry): Promise<string>;
}

const STEPS: Record<CredentialKind, KindSteps> = {
  'api-key': apiKeySteps,
  'restricted-key': restrictedKeySteps,
  'auth-token': authTokenSteps,
};

export function kindSteps(rec: Pick<RotationRecord, 'kind'>): KindSteps {
  return STEPS[rec.kind ?? 'api-key'];
}

export { heldIds } from './key-family.ts';

export { credentialOps } from './ops.ts';
