import type { TwilioApiKeyCredential } from '../src/domain/secret.ts';
import { credentialSecretPath, DEFAULT_CREDENTIAL } from '../src/domain/credential.ts';

/**
 * The contract every secret store meets (file, AWS Secrets Manager, Vault). SPEC.md maps the three
 * stages onto each store. Every write is idempotent: repeating it — after a crash at any line, or
 * by a second worker — gives the same state as doing it once. Each write first reads the store
 * and does only what is missing.
 *
 * Stage semantics:
 *  - current:  what applications read. Never empty once a subaccount is bootstrapped.
 *  - pending:  a credential staged by a rotation (`rotationId` always known). Not handed out.
 *  - previous: the credential that was current before the last promotion; still valid at Twilio
 *              until the rotation's delete-old step drops it.
 *
 * Errors: StoreError with code `store_unavailable` (transient: network, 5xx, throttling),
 * `store_permission` (permanent: 401/403/AccessDenied), `store_conflict` (a write raced another
 * and lost: the caller re-reads and retries), `store_state` (the entry is not in a state that
 * allows this write, e.g. promoting a pending that is not there), `store_config`.
 */
export interface StoredVersion {
  credential: TwilioApiKeyCredential;
  /** The rotation that wrote this version, where the store records it (always for pending). */
  rotationId?: string;
}

export interface SecretEntry {
  current?: StoredVersion;
  pending?: StoredVersion;
  previous?: StoredVersion;
}

export type StoreKind = 'file' | 'aws' | 'vault';

export interface SecretStore {
  readonly kind: StoreKind;

  /** What a consumer sees: the current version, or undefined when none exists. */
  readCurrent(path: string): Promise<TwilioApiKeyCredential | undefined>;

  /** All three stages. */
  read(path: string): Promise<SecretEntry>;

  /**
   * Stage `credential` as pending for `rotationId`. The same rotation id with the same value again
   * is a no-op; the same rotation id with another value → StoreError `store_conflict`. A pending
   * version of another rotation is replaced (that rotation is over: one rotation per subaccount).
   */
  putPending(path: string, rotationId: string, credential: TwilioApiKeyCredential): Promise<void>;

  /**
   * Make the pending version of `rotationId` (whose key is `apiKeySid`) current; the old current
   * becomes previous, the pending stage is cleared. A no-op when current already holds `apiKeySid`.
   * Throws `store_state` when neither holds.
   */
  promotePending(path: string, rotationId: string, apiKeySid: string): Promise<void>;

  /** Remove the pending stage when it belongs to `rotationId`; otherwise a no-op. */
  discardPending(path: string, rotationId: string): Promise<void>;

  /**
   * Rollback of a promotion: when current holds `newKeySid`, make the previous version current
   * again (or, for a bootstrap with no previous, remove current). A no-op when current does not
   * hold `newKeySid`. Afterwards no stage holds `newKeySid`.
   */
  restorePrevious(path: string, newKeySid: string): Promise<void>;

  /** Drop the previous stage when it holds `apiKeySid`; otherwise a no-op. */
  dropPrevious(path: string, apiKeySid: string): Promise<void>;

  /** Readiness: reachable, authorised, configured. Throws StoreError with a message saying what to fix. */
  check(): Promise<void>;

  close(): Promise<void>;
}

export type StoreErrorCode = 'store_unavailable' | 'store_permission' | 'store_conflict' | 'store_state' | 'store_config' | 'store_corrupt';

export { StoreError } from './store-error.ts';

/** `SECRET_PATH_TEMPLATE` → the path of one managed credential's secret (the `default` one unless named). */
export function secretPath(template: string, accountSid: string, name: string = DEFAULT_CREDENTIAL): string {
  return credentialSecretPath(template, { accountSid, name });
}
