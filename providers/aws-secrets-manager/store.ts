import { createHash } from 'node:crypto';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretEntry, SecretStore, StoredVersion } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { credentialFromObject, serializeCredential } from '../../src/domain/secret.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import { awsErrorName, toStoreError } from './errors.ts';

const AWSCURRENT = 'AWSCURRENT';
const AWSPENDING = 'AWSPENDING';
const AWSPREVIOUS = 'AWSPREVIOUS';

/**
 * PutSecretValue attaches AWSCURRENT to the first version of a secret whatever VersionStages says
 * (API reference, PutSecretValue). A pending credential written into an empty secret would be handed
 * out before it was verified, so a new secret starts with this placeholder as its AWSCURRENT: the
 * bootstrap pending stays pending, promotion moves AWSCURRENT off the placeholder, and rolling a
 * bootstrap back moves AWSCURRENT back onto it. Readers treat it as "no credential".
 */
export const PLACEHOLDER_VALUE = JSON.stringify({
  rotator: 'placeholder',
  note: 'No Twilio credential has been promoted into this secret yet; Rotator writes one when it first rotates this subaccount.',
});

/** Every write re-reads and retries after losing a race; this bounds the retries. */
const MAX_ROUNDS = 8;
const VALUE_CACHE_LIMIT = 512;

type StoredValue = { kind: 'credential'; credential: TwilioApiKeyCredential } | { kind: 'placeholder' };

interface Described {
  arn: string;
  stages: Map<string, string[]>;
  current?: string;
  pending?: string;
  previous?: string;
}

export interface AwsSecretsManagerStoreDeps {
  client: SecretsManagerClient;
  tags: Record<string, string>;
  /** Destroy the client on close() (false when the caller passed its own). */
  ownsClient: boolean;
}

/**
 * SPEC's stage mapping onto Secrets Manager staging labels: current = AWSCURRENT, pending = the
 * version whose VersionId is the rotation id with AWSPENDING, previous = AWSPREVIOUS. Each write
 * follows AWS's rotation templates: describe the secret, do only the label move that is missing,
 * and describe again after losing a race.
 */
export class AwsSecretsManagerStore implements SecretStore {
  readonly kind = 'aws' as const;
  readonly #client: SecretsManagerClient;
  readonly #tags: Record<string, string>;
  readonly #ownsClient: boolean;
  // A version's value never changes, so values can be cached by ARN (unique per secret incarnation) and VersionId.
  readonly #values = new Map<string, StoredValue>();

  constructor(deps: AwsSecretsManagerStoreDeps) {
    this.#client = deps.client;
    this.#tags = deps.tags;
    this.#ownsClient = deps.ownsClient;
  }

  async readCurrent(path: string): Promise<TwilioApiKeyCredential | undefined> {
    let out;
    try {
      // AWSCURRENT is the documented default, but servers built on moto (LocalStack) answer an
      // unstaged read with the version the secret was created or last PutSecretValue'd with,
      // which UpdateSecretVersionStage does not move: promotions would never be seen.
      out = await this.#client.send(new GetSecretValueCommand({ SecretId: path, VersionStage: AWSCURRENT }));
    } catch (err) {
      if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
      throw toStoreError(err, { operation: 'GetSecretValue', secretId: path });
    }
    const value = parseStoredValue(out.SecretString, path, out.VersionId);
    if (out.ARN && out.VersionId) this.#remember(out.ARN, out.VersionId, value);
    return value.kind === 'credential' ? value.credential : undefined;
  }

  async read(path: string): Promise<SecretEntry> {
    const d = await this.#describe(path);
    if (!d) return {};
    const entry: SecretEntry = {};
    const current = d.current ? await this.#version(path, d, d.current) : undefined;
    if (current) entry.current = current;
    // A label sharing the current version is the tail of an interrupted promotion, not a stage of its own.
    if (d.pending && d.pending !== d.current) {
      const pending = await this.#version(path, d, d.pending);
      if (pending) entry.pending = pending;
    }
    if (d.previous && d.previous !== d.current) {
      const previous = await this.#version(path, d, d.previous);
      if (previous) entry.previous = previous;
    }
    return entry;
  }

  async putPending(path: string, rotationId: string, credential: TwilioApiKeyCredential): Promise<void> {
    const versionId = versionIdFor(rotationId);
    await this.#converge(path, 'putPending', async () => {
      const d = await this.#describe(path);
      if (!d) {
        await this.#createWithPlaceholder(path, rotationId, credential.accountSid);
        return 'again';
      }
      if (!d.current) {
        // A secret created outside Rotator without a value: its first version would become AWSCURRENT.
        const token = bootstrapToken(rotationId);
        if (d.stages.has(token)) await this.#moveLabel(path, AWSCURRENT, token, undefined);
        else await this.#put(path, token, PLACEHOLDER_VALUE);
        return 'again';
      }
      const stages = d.stages.get(versionId);
      if (stages) {
        await this.#expectSameCredential(path, d.arn, rotationId, credential);
        // Already pending, or already promoted past pending: nothing to do.
        if (stages.some((s) => s === AWSPENDING || s === AWSCURRENT || s === AWSPREVIOUS)) return 'done';
        // The version lost its labels (discarded); stage it again. (moto lists such versions; AWS does not.)
        return (await this.#moveLabel(path, AWSPENDING, versionId, d.pending)) ? 'done' : 'again';
      }
      // PutSecretValue moves AWSPENDING off a stale version of another rotation by itself.
      const staged = await this.#put(path, versionId, serializeCredential(credential), [AWSPENDING]);
      if (!staged) {
        // The token is taken by a version DescribeSecret does not list (one without labels) or by a racing writer.
        await this.#expectSameCredential(path, d.arn, rotationId, credential);
        return 'again';
      }
      // DescribeSecret leaves out versions without labels (API reference, VersionIdsToStages), so a
      // discarded pending of this rotation lands here: PutSecretValue with the same token and value
      // is then a no-op that leaves the version unlabelled, and the label has to be moved onto it.
      if (!staged.includes(AWSPENDING)) return (await this.#moveLabel(path, AWSPENDING, versionId, d.pending)) ? 'done' : 'again';
      return 'done';
    });
  }

  async promotePending(path: string, rotationId: string, apiKeySid: string): Promise<void> {
    const versionId = versionIdFor(rotationId);
    await this.#converge(path, 'promotePending', async () => {
      const d = await this.#describe(path);
      if (!d) throw noPending(path, rotationId, apiKeySid, 'the secret does not exist');
      const current = d.current ? await this.#value(path, d.arn, d.current) : undefined;
      if (d.current && current?.kind === 'credential' && current.credential.apiKeySid === apiKeySid) {
        // Promoted already; an interrupted promotion may have left AWSPENDING on the new current.
        if (d.pending !== d.current) return 'done';
        return (await this.#removeLabel(path, AWSPENDING, d.current)) ? 'done' : 'again';
      }
      if (d.pending !== versionId) {
        throw noPending(path, rotationId, apiKeySid, d.pending ? `AWSPENDING is on version ${d.pending}` : 'no version is staged AWSPENDING');
      }
      const pending = await this.#value(path, d.arn, versionId);
      if (pending?.kind !== 'credential' || pending.credential.apiKeySid !== apiKeySid) {
        throw noPending(path, rotationId, apiKeySid, 'the pending version holds another key');
      }
      // AWS moves AWSPREVIOUS onto the old current itself; AWSPENDING is removed on the next round.
      await this.#moveLabel(path, AWSCURRENT, versionId, d.current);
      return 'again';
    });
  }

  async discardPending(path: string, rotationId: string): Promise<void> {
    const versionId = versionIdFor(rotationId);
    await this.#converge(path, 'discardPending', async () => {
      const d = await this.#describe(path);
      if (!d || d.pending !== versionId) return 'done';
      return (await this.#removeLabel(path, AWSPENDING, versionId)) ? 'done' : 'again';
    });
  }

  async restorePrevious(path: string, newKeySid: string): Promise<void> {
    await this.#converge(path, 'restorePrevious', async () => {
      const d = await this.#describe(path);
      if (!d) return 'done';
      const current = d.current ? await this.#value(path, d.arn, d.current) : undefined;
      if (!d.current || current?.kind !== 'credential' || current.credential.apiKeySid !== newKeySid) {
        // Moving AWSCURRENT back put AWSPREVIOUS on the new key's version; finish by removing it.
        if (!d.previous || d.previous === d.current) return 'done';
        const previous = await this.#value(path, d.arn, d.previous);
        if (previous?.kind !== 'credential' || previous.credential.apiKeySid !== newKeySid) return 'done';
        return (await this.#removeLabel(path, AWSPREVIOUS, d.previous)) ? 'done' : 'again';
      }
      if (d.previous && d.previous !== d.current) {
        // The previous version is the old key, or the placeholder when rolling back a bootstrap.
        await this.#moveLabel(path, AWSCURRENT, d.previous, d.current);
        return 'again';
      }
      // No previous version to return to (AWSPREVIOUS was dropped or never existed): a placeholder is
      // staged as previous, and the next round makes it current as above. PutSecretValue is not left
      // to move AWSCURRENT itself: moto (LocalStack) then takes AWSCURRENT off the version it last
      // put, not off the one UpdateSecretVersionStage made current, and two versions end up current.
      const token = restoreToken(newKeySid);
      const staged = await this.#put(path, token, PLACEHOLDER_VALUE, [AWSPREVIOUS]);
      // An earlier round's placeholder that has since lost its label: PutSecretValue was a no-op.
      if (staged && !staged.includes(AWSPREVIOUS)) await this.#moveLabel(path, AWSPREVIOUS, token, undefined);
      return 'again';
    });
  }

  async dropPrevious(path: string, apiKeySid: string): Promise<void> {
    await this.#converge(path, 'dropPrevious', async () => {
      const d = await this.#describe(path);
      if (!d?.previous || d.previous === d.current) return 'done';
      const previous = await this.#value(path, d.arn, d.previous);
      if (previous?.kind !== 'credential' || previous.credential.apiKeySid !== apiKeySid) return 'done';
      return (await this.#removeLabel(path, AWSPREVIOUS, d.previous)) ? 'done' : 'again';
    });
  }

  async check(): Promise<void> {
    try {
      await this.#client.send(new ListSecretsCommand({ MaxResults: 1 }));
    } catch (err) {
      throw toStoreError(err, { operation: 'ListSecrets' });
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy();
  }

  /** Runs `round` until it reports done; a round that lost a race to another writer asks for another look. */
  async #converge(path: string, what: string, round: () => Promise<'done' | 'again'>): Promise<void> {
    for (let i = 0; i < MAX_ROUNDS; i++) {
      if ((await round()) === 'done') return;
    }
    throw new StoreError('store_conflict', `${what} on ${path} did not settle after ${MAX_ROUNDS} rounds: other writers keep changing its staging labels; retry`);
  }

  async #describe(path: string): Promise<Described | undefined> {
    let out;
    try {
      out = await this.#client.send(new DescribeSecretCommand({ SecretId: path }));
    } catch (err) {
      if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
      throw toStoreError(err, { operation: 'DescribeSecret', secretId: path });
    }
    if (out.DeletedDate) {
      throw new StoreError(
        'store_state',
        `secret ${path} is scheduled for deletion in AWS Secrets Manager: restore it (aws secretsmanager restore-secret --secret-id ${path}) or wait until the deletion completes`,
      );
    }
    const stages = new Map(Object.entries(out.VersionIdsToStages ?? {}));
    const holder = (label: string): string | undefined => [...stages].find(([, s]) => s.includes(label))?.[0];
    const d: Described = { arn: out.ARN ?? path, stages };
    const current = holder(AWSCURRENT);
    const pending = holder(AWSPENDING);
    const previous = holder(AWSPREVIOUS);
    if (current) d.current = current;
    if (pending) d.pending = pending;
    if (previous) d.previous = previous;
    return d;
  }

  async #version(path: string, d: Described, versionId: string): Promise<StoredVersion | undefined> {
    const value = await this.#value(path, d.arn, versionId);
    if (value?.kind !== 'credential') return undefined;
    return { credential: value.credential, rotationId: rotationIdOf(versionId) };
  }

  async #value(path: string, arn: string, versionId: string): Promise<StoredValue | undefined> {
    const cached = this.#values.get(cacheKey(arn, versionId));
    if (cached) return cached;
    let out;
    try {
      out = await this.#client.send(new GetSecretValueCommand({ SecretId: path, VersionId: versionId }));
    } catch (err) {
      // The version was removed between DescribeSecret and now.
      if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
      throw toStoreError(err, { operation: 'GetSecretValue', secretId: path });
    }
    const value = parseStoredValue(out.SecretString, path, versionId);
    this.#remember(out.ARN ?? arn, versionId, value);
    return value;
  }

  #remember(arn: string, versionId: string, value: StoredValue): void {
    if (this.#values.size >= VALUE_CACHE_LIMIT) {
      const oldest = this.#values.keys().next().value;
      if (oldest !== undefined) this.#values.delete(oldest);
    }
    this.#values.set(cacheKey(arn, versionId), value);
  }

  async #createWithPlaceholder(path: string, rotationId: string, accountSid: string): Promise<void> {
    const tags = { ...this.#tags, 'managed-by': 'rotator' };
    try {
      await this.#client.send(
        new CreateSecretCommand({
          Name: path,
          ClientRequestToken: bootstrapToken(rotationId),
          SecretString: PLACEHOLDER_VALUE,
          Description: `Twilio API key of ${accountSid}, rotated by Rotator`,
          Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      );
    } catch (err) {
      // Another writer created it first; the caller describes it again.
      if (awsErrorName(err) === 'ResourceExistsException') return;
      throw toStoreError(err, { operation: 'CreateSecret', secretId: path });
    }
  }

  /**
   * PutSecretValue; the labels the version has afterwards, or undefined when the token is taken by
   * a version with another value (another writer, or an earlier attempt): look again.
   */
  async #put(path: string, token: string, value: string, stages?: string[]): Promise<string[] | undefined> {
    try {
      const out = await this.#client.send(
        new PutSecretValueCommand({ SecretId: path, ClientRequestToken: token, SecretString: value, ...(stages ? { VersionStages: stages } : {}) }),
      );
      return out.VersionStages ?? [];
    } catch (err) {
      if (awsErrorName(err) === 'ResourceExistsException') return undefined;
      throw toStoreError(err, { operation: 'PutSecretValue', secretId: path });
    }
  }

  /** The version named after `rotationId` holds `credential`; else store_conflict (contract: one value per rotation). */
  async #expectSameCredential(path: string, arn: string, rotationId: string, credential: TwilioApiKeyCredential): Promise<void> {
    const existing = await this.#value(path, arn, versionIdFor(rotationId));
    if (existing && (existing.kind !== 'credential' || !sameCredential(existing.credential, credential))) {
      throw new StoreError('store_conflict', `rotation ${rotationId} already staged a different credential at ${path}`);
    }
  }

  /** UpdateSecretVersionStage; false when the labels moved since they were read: look again. */
  async #moveLabel(path: string, label: string, moveTo: string, removeFrom: string | undefined): Promise<boolean> {
    return this.#updateStage(path, { VersionStage: label, MoveToVersionId: moveTo, ...(removeFrom && removeFrom !== moveTo ? { RemoveFromVersionId: removeFrom } : {}) });
  }

  async #removeLabel(path: string, label: string, removeFrom: string): Promise<boolean> {
    return this.#updateStage(path, { VersionStage: label, RemoveFromVersionId: removeFrom });
  }

  async #updateStage(path: string, input: { VersionStage: string; MoveToVersionId?: string; RemoveFromVersionId?: string }): Promise<boolean> {
    try {
      await this.#client.send(new UpdateSecretVersionStageCommand({ SecretId: path, ...input }));
      return true;
    } catch (err) {
      const name = awsErrorName(err);
      if (name === 'InvalidParameterException' || name === 'ResourceNotFoundException') return false;
      throw toStoreError(err, { operation: 'UpdateSecretVersionStage', secretId: path });
    }
  }
}

/**
 * ClientRequestToken (and so VersionId) must be 32–64 characters. UUID rotation ids (36) are used
 * as they are, so a version's id names its rotation; shorter ids such as ULIDs (26) get a prefix.
 */
const ROTATION_PREFIX = 'rotation-';
export function versionIdFor(rotationId: string): string {
  if (rotationId.length >= 32 && rotationId.length <= 64) return rotationId;
  const prefixed = `${ROTATION_PREFIX}${rotationId}`;
  if (rotationId.length > 0 && prefixed.length >= 32 && prefixed.length <= 64) return prefixed;
  throw new StoreError('store_config', `rotation id "${rotationId}" cannot become an AWS version id (needs 23–64 characters)`);
}

function rotationIdOf(versionId: string): string {
  return versionId.startsWith(ROTATION_PREFIX) && versionId.length - ROTATION_PREFIX.length < 32 ? versionId.slice(ROTATION_PREFIX.length) : versionId;
}

// Deterministic, so a repeated bootstrap or restore reuses its own placeholder version instead of piling up new ones.
function bootstrapToken(rotationId: string): string {
  return `rotator-bootstrap-${sha(rotationId)}`;
}

function restoreToken(newKeySid: string): string {
  return `rotator-restore-${sha(newKeySid)}`;
}

function sha(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 40);
}

function cacheKey(arn: string, versionId: string): string {
  return `${arn}\n${versionId}`;
}

export function isPlaceholder(raw: unknown): boolean {
  const o = raw as Record<string, unknown> | null;
  return typeof o === 'object' && o !== null && o.rotator === 'placeholder' && !('apiKeySid' in o);
}

function parseStoredValue(secretString: string | undefined, path: string, versionId: string | undefined): StoredValue {
  const corrupt = (): StoreError =>
    new StoreError(
      'store_corrupt',
      `secret ${path} (version ${versionId ?? 'AWSCURRENT'}) is not a Twilio API key credential: its SecretString must be JSON {accountSid, apiKeySid, apiKeySecret}`,
    );
  if (secretString === undefined) throw corrupt();
  let raw: unknown;
  try {
    raw = JSON.parse(secretString);
  } catch {
    throw corrupt();
  }
  if (isPlaceholder(raw)) return { kind: 'placeholder' };
  try {
    return { kind: 'credential', credential: credentialFromObject(raw) };
  } catch {
    throw corrupt();
  }
}

function sameCredential(a: TwilioApiKeyCredential, b: TwilioApiKeyCredential): boolean {
  return a.accountSid === b.accountSid && a.apiKeySid === b.apiKeySid && a.apiKeySecret.equals(b.apiKeySecret);
}

function noPending(path: string, rotationId: string, apiKeySid: string, why: string): StoreError {
  return new StoreError('store_state', `no pending credential ${apiKeySid} of rotation ${rotationId} at ${path} to promote (${why})`);
}
