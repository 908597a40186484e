import { PermanentError } from '../../src/domain/errors.ts';
import { rotationIdInKeyName, stagingId, type RotationRecord } from '../../src/domain/rotation.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import type { TwilioKey } from '../../src/twilio/admin.ts';
import { checkSubaccount } from './check-subaccount.ts';
import { keyName, type StepContext, type StepOutcome } from './context.ts';
import { verifyWithPropagation } from './verify.ts';

/**
 * Step 1. Check the account is an active subaccount of the parent, create the new key with
 * FriendlyName `<prefix>:<rotationId>`, store its secret as pending before anything else, then
 * prove it works.
 *
 * Resuming after a crash: a pending secret under this rotation id is adopted; a key at Twilio named
 * for this rotation (or an earlier one of this credential) that the credential's store entry does
 * not hold has a lost secret and is deleted before creating.
 */
export async function createSecondaryKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const path = ctx.secretPath(rec.accountSid, rec.credential);
  const entry = await ctx.store.read(path);
  const held = new Set([entry.current, entry.pending, entry.previous].filter((v) => v).map((v) => v!.credential.apiKeySid));
  const oldKeySid = rec.oldKeySid !== undefined ? rec.oldKeySid : (entry.current?.credential.apiKeySid ?? null);

  let credential: TwilioApiKeyCredential;
  let detail: string;
  if (entry.pending?.rotationId === stagingId(rec)) {
    credential = entry.pending.credential;
    detail = 'adopted the pending key of an interrupted run';
  } else {
    await checkSubaccount(ctx, rec);
    const sprawl = await deleteOrphans(ctx, rec, held);
    ctx.crash('create-secondary:start');
    const created = await ctx.twilio.createKey(rec.accountSid, keyName(ctx.keyNamePrefix, rec.id));
    ctx.crash('create-secondary:after-create-key');
    credential = { accountSid: rec.accountSid, apiKeySid: created.sid, apiKeySecret: created.secret };
    await ctx.store.putPending(path, stagingId(rec), credential);
    ctx.crash('create-secondary:after-store-pending');
    detail = `created${sprawlNote(sprawl)}`;
  }

  if (oldKeySid === credential.apiKeySid) throw new PermanentError('invariant', `new key ${credential.apiKeySid} equals the old key`);
  await verifyWithPropagation(ctx, credential);
  ctx.crash('create-secondary:done');
  return {
    kind: 'advance',
    patch: { newKeySid: credential.apiKeySid, oldKeySid },
    next: 'operationalize',
    detail: `${detail}; verified${oldKeySid ? '' : '; bootstrap'}`,
  };
}

/**
 * Keys Rotator created for this credential that no stage of its store entry holds have no use:
 * their secret is lost (a run died between Twilio's answer and the store write) or an undo could
 * not finish. Only one rotation per credential runs at a time, so none of them can belong to a live
 * rotation.
 *
 * "Rotator created" is proved by the records, not the name: a key is deleted only when its
 * FriendlyName is exactly `<prefix>:<id>` and `id` is this rotation or one Rotator has a record of
 * for this same credential. A key of a rotation of another credential of the subaccount is that
 * credential's business — held by its store entry (which this one cannot see), or just created by
 * its rotation in flight, before its secret reached the store — so it is neither deleted nor
 * reported. Any other key with the prefix — another deployment's with the same prefix, a person's,
 * one whose record retention removed — is sprawl: reported (history, log, metric), never deleted,
 * since an application may be using it.
 */
async function deleteOrphans(ctx: StepContext, rec: RotationRecord, held: ReadonlySet<string>): Promise<TwilioKey[]> {
  const { ours, sprawl } = await sortPrefixedKeys(ctx, rec, await ctx.twilio.listKeys(rec.accountSid), held);
  for (const key of ours) await ctx.twilio.deleteKey(rec.accountSid, key.sid);
  if (sprawl.length) ctx.reportSprawl?.(rec, sprawl);
  return sprawl;
}

/**
 * The keys with Rotator's prefix that no stage of this credential's store entry holds: those
 * Rotator provably created for this credential (`ours`), and those it did not create (`sprawl`).
 * Keys of rotations of the subaccount's other credentials are in neither.
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
