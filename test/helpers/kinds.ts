/**
 * The credential kinds in the engine tests: seeding a subaccount's `default` credential of a kind
 * (at the emulator, in the store, and as a managed credential of that kind), starting its rotation
 * the way each kind must be started, and the end state each kind must leave. The zero-downtime and
 * crash tests run through these, parameterised by kind.
 */
import type { Runtime } from '../../src/runtime.ts';
import type { CredentialKind } from '../../src/domain/credential.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';
import { authTokenCredential, authTokenId, Secret } from '../../src/domain/secret.ts';
import type { Stack } from './stack.ts';

/** A restricted key's policy in these tests: what the simulated consumers do (read and send messages), nothing more. */
export const CONSUMER_POLICY = { allow: ['/twilio/messaging/messages/read', '/twilio/messaging/messages/create'] };

/**
 * Seed `sids` with a current credential of `kind` (api-key: what stack.seed does), and make their
 * `default` credential of that kind. An auth-token credential's account gets Auth Token rotation
 * enabled (an admin's PATCH).
 */
export async function seedKind(stack: Stack, rt: Pick<Runtime, 'credentials' | 'accounts'>, sids: readonly string[], kind: CredentialKind): Promise<void> {
  await seedCredentials(stack, sids, kind);
  await manageAs(stack, rt, sids, kind);
}

/** The emulator and the store part of seedKind (shared by every Redis prefix of a test). */
export async function seedCredentials(stack: Stack, sids: readonly string[], kind: CredentialKind): Promise<void> {
  if (kind === 'api-key') {
    await stack.seed(sids);
    return;
  }
  for (const sid of sids) {
    const seedId = crypto.randomUUID();
    const credential =
      kind === 'restricted-key'
        ? (() => {
            const key = stack.emu.seedKey(sid, 'initial restricted key', 'restricted', undefined, CONSUMER_POLICY);
            return { accountSid: sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret) };
          })()
        : authTokenCredential(sid, new Secret(stack.emu.account(sid)!.authToken));
    await stack.store.putPending(stack.path(sid), seedId, credential);
    await stack.store.promotePending(stack.path(sid), seedId, credential.apiKeySid);
  }
}

/** The Redis part of seedKind: the `default` credentials of `sids` are of `kind`; an Auth Token's account has its rotation enabled. */
export async function manageAs(stack: Stack, rt: Pick<Runtime, 'credentials' | 'accounts'>, sids: readonly string[], kind: CredentialKind): Promise<void> {
  if (kind === 'api-key') return;
  for (const sid of sids) await rt.credentials.ensure({ accountSid: sid, name: 'default' }, { kind });
  if (kind === 'auth-token') {
    const info = sids.map((sid) => ({ accountSid: sid, friendlyName: stack.emu.account(sid)!.friendlyName, status: 'active', ownerAccountSid: stack.emu.parent.accountSid }));
    await rt.accounts.upsertMany(info);
    for (const sid of sids) await rt.accounts.patch(sid, { authTokenRotation: true });
  }
}

/** Start a rotation of the `default` credential as an admin would: an Auth Token's with the confirmation. */
export async function startKindRotation(rt: Pick<Runtime, 'service'>, accountSid: string, kind: CredentialKind, reason = 'test'): Promise<RotationRecord> {
  const r = await rt.service.start({ accountSid, reason, trigger: 'api', requestedBy: 'test', ...(kind === 'auth-token' ? { admin: true, confirm: accountSid } : {}) });
  if (!r.started) throw new Error(`rotation already in flight for ${accountSid}: ${r.existing.id}`);
  expectKind(r.record, kind);
  return r.record;
}

function expectKind(rec: RotationRecord, kind: CredentialKind): void {
  if (rec.kind !== kind) throw new Error(`rotation ${rec.id} is of kind ${rec.kind}, expected ${kind}`);
}

/**
 * The end state every rotation must leave, per kind. Keys: exactly one key at Twilio, the store's
 * current one (a restricted key with the consumers' policy). Auth Token: the store's current token
 * is the account's primary, and no secondary token is left at Twilio. Neither leaves a pending or
 * previous stage.
 */
export async function expectSettledKind(stack: Stack, accountSid: string, kind: CredentialKind): Promise<{ problems: string[]; currentKeySid?: string }> {
  const problems: string[] = [];
  const entry = await stack.store.read(stack.path(accountSid));
  const current = entry.current?.credential.apiKeySid;
  if (!current) problems.push('store has no current credential');
  if (entry.pending) problems.push(`pending stage lingers (${entry.pending.credential.apiKeySid})`);
  if (entry.previous) problems.push(`previous stage lingers (${entry.previous.credential.apiKeySid})`);
  if (kind === 'auth-token') {
    const account = stack.emu.account(accountSid)!;
    if (current !== authTokenId(account.authToken)) problems.push(`store current ${current} is not the account's primary Auth Token ${authTokenId(account.authToken)}`);
    if (account.hasSecondaryAuthToken) problems.push('a secondary Auth Token is left at Twilio (orphan)');
  } else {
    const keys = stack.emu.listKeys(accountSid);
    if (keys.length !== 1) problems.push(`Twilio has ${keys.length} keys (${keys.map((k) => k.sid).join(', ')})`);
    if (current && !keys.some((k) => k.sid === current)) problems.push(`store current ${current} is not at Twilio`);
    if (kind === 'restricted-key') {
      for (const k of keys) if (JSON.stringify(k.policy) !== JSON.stringify(CONSUMER_POLICY)) problems.push(`key ${k.sid} has policy ${JSON.stringify(k.policy)}, not the old key's`);
    }
  }
  return { problems, ...(current ? { currentKeySid: current } : {}) };
}
