/**
 * What API keys and restricted keys share: keys named `<prefix>:<rotationId>` at Twilio, orphans
 * found by that name and deleted only when Rotator's records prove it created them, and an undo
 * that deletes this rotation's key unless the store holds it. The two kinds differ in the Twilio
 * API they call (v2010 or IAM v1), passed in as `KeyApi`.
 */
import type { SecretEntry } from '../../../providers/secret-store.ts';
import { RotatorError } from '../../../src/domain/errors.ts';
import { credentialOf, rotationIdInKeyName, type RotationRecord } from '../../../src/domain/rotation.ts';
import type { TwilioKey } from '../../../src/twilio/admin.ts';
import { keyName, type StepContext } from '../context.ts';

/** The identifiers every stage of a store entry holds. */
export function heldIds(entry: SecretEntry): Set<string> {
  return new Set([entry.current, entry.pending, entry.previous].filter((v) => v).map((v) => v!.credential.apiKeySid));
}

export interface KeyApi {
  list(accountSid: string): Promise<TwilioKey[]>;
  remove(accountSid: string, keySid: string): Promise<'deleted' | 'absent'>;
}

/**
 * Keys Rotator created for this credential that no stage of its store entry holds have no use:
 * their secret is lost (a run died between Twilio's answer and the store write) or an undo could
 * not finish. Only one rotation per credential runs at a time, so none of them can belong to a live
 * rotation. Returns the sprawl (see sortPrefixedKeys), which is left in place.
 */
export async function deleteOrphanKeys(ctx: StepContext, api: KeyApi, rec: RotationRecord, held: ReadonlySet<string>): Promise<TwilioKey[]> {
  const { ours, sprawl } = await sortPrefixedKeys(ctx, rec, await api.list(rec.accountSid), held);
  for (const key of ours) await api.remove(rec.accountSid, key.sid);
  if (sprawl.length) ctx.reportSprawl?.(rec, sprawl);
  return sprawl;
}

/**
 * The keys with Rotator's prefix that no stage of this credential's store entry holds: those
 * Rotator provably created for this credential (`ours`), and those it did not create (`sprawl`).
 * Keys of rotations of the subaccount's other credentials are in neither.
 *
 * "Rotator created" is proved by the records, not the name: a key is ours only when its
 * FriendlyName is exactly `<prefix>:<id>` and `id` is this rotation or one Rotator has a record of
 * for this same credential. A key of a rotation of another credential of the subaccount is that
 * credential's business. Any other key with the prefix — another deployment's with the same prefix,
 * a person's, one whose record retention removed — is sprawl: reported, never deleted, since an
 * application may be using it.
 */
export async function sortPrefixedKeys(
  ctx: Pick<StepContext, 'keyNamePrefix' | 'knownRotations'>,
  rec: Pick<RotationRecord, 'id' | 'accountSid' | 'credential'>,
  keys: readonly TwilioKey[],
  held: ReadonlySet<string>,
): Promise<{ ours: TwilioKey[]; sprawl: TwilioKey[] }> {
  const prefixed = keys.filter((k) => k.friendlyName.startsWith(`${ctx.keyNamePrefix}:`) && !held.has(k.sid));
  if (prefixed.length === 0) return { ours: [], sprawl: [] };
  const named = new Map(prefixed.map((k) => [k.sid, rotationIdInKeyName(ctx.keyNamePrefix, k.friendlyName)]));
  const others = [...new Set([...named.values()].filter((id): id is string => id !== undefined && id !== rec.id))];
  const known: ReadonlyMap<string, string> = others.length ? await ctx.knownRotations(rec.accountSid, others) : new Map();
  const ours: TwilioKey[] = [];
  const sprawl: TwilioKey[] = [];
  for (const key of prefixed) {
    const id = named.get(key.sid);
    const credential = id === rec.id ? rec.credential : id !== undefined ? known.get(id) : undefined;
    if (credential === undefined) sprawl.push(key);
    else if (credential === rec.credential) ours.push(key);
  }
  return { ours, sprawl };
}

export function sprawlNote(sprawl: readonly TwilioKey[]): string {
  if (sprawl.length === 0) return '';
  const shown = sprawl.slice(0, 5).map((k) => k.sid).join(', ');
  return `; left in place ${sprawl.length} key(s) with Rotator's prefix that Rotator did not create (sprawl): ${shown}${sprawl.length > 5 ? ', …' : ''}`;
}

/** Undo: delete the keys of this rotation (by SID or by name) that no stage of the store holds. */
export async function deleteRotationKeys(ctx: StepContext, api: KeyApi, rec: RotationRecord, held: ReadonlySet<string>): Promise<string> {
  const name = keyName(ctx.keyNamePrefix, rec.id);
  const deleted: string[] = [];
  let keys;
  try {
    keys = await api.list(rec.accountSid);
  } catch (err) {
    // Twilio does not know the subaccount (404): no key of it exists, so none is left to delete.
    // Stopping here would hold the subaccount for a failure that left nothing behind at Twilio.
    if (err instanceof RotatorError && err.code === 'twilio_not_found') return `no new key to delete: Twilio does not know ${rec.accountSid}`;
    throw err;
  }
  for (const key of keys) {
    if ((key.sid === rec.newKeySid || key.friendlyName === name) && !held.has(key.sid)) {
      if ((await api.remove(rec.accountSid, key.sid)) === 'deleted') deleted.push(key.sid);
    }
  }
  return deleted.length ? `deleted new key ${deleted.join(', ')}` : 'no new key to delete';
}

/** A dry run of a key kind: the store entry against the keys Twilio lists. */
export async function dryRunKeys(ctx: StepContext, api: KeyApi, rec: RotationRecord, held: ReadonlySet<string>, current: string | undefined): Promise<string> {
  const keys = await api.list(rec.accountSid);
  const { sprawl } = await sortPrefixedKeys(ctx, rec, keys, held);
  if (!current) return `dry run: would bootstrap ${credentialOf(rec)} (store empty; ${keys.length} keys at Twilio)${sprawlNote(sprawl)}`;
  const atTwilio = keys.some((k) => k.sid === current);
  return `dry run: would replace ${current}${atTwilio ? '' : " (WARNING: the store's current key is not at Twilio)"}; ${keys.length} keys at Twilio${sprawlNote(sprawl)}`;
}
