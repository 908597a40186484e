/**
 * An account's Auth Token through Accounts v1: create-secondary = `POST /v1/AuthTokens/Secondary`;
 * operationalize = the secondary becomes the store's current (the old token stays valid at Twilio
 * and readable as previous); promote = `POST /v1/AuthTokens/Promote` after the drain and the gates,
 * from which moment the old token fails (20003); delete-old = nothing is left at Twilio, the store's
 * previous stage is dropped.
 *
 * Twilio keeps at most one secondary token per account and never shows it again, so what an
 * interrupted run left is found by elimination: a secondary that no store stage holds is deleted
 * before creating, and a token the store holds is recognised by its fingerprint (authTokenId).
 * The Accounts v1 calls act on the account that authenticates, so they are made as the account,
 * with its primary token read by the parent (held in memory only).
 */
import { PermanentError } from '../../../src/domain/errors.ts';
import { credentialOf } from '../../../src/domain/rotation.ts';
import { authTokenDependents } from '../../../src/domain/auth-token.ts';
import { authTokenCredential, authTokenId } from '../../../src/domain/secret.ts';
import { verifyWithPropagation } from '../verify.ts';
import type { KindSteps } from './index.ts';
import { credentialOps } from './ops.ts';

export const authTokenSteps: KindSteps = {
  noun: 'Auth Token',
  async bootstrapOld(ctx, rec) {
    // The store is empty but the account has a live token: it is still the one to promote away.
    return authTokenId(await credentialOps(ctx, 'auth-token').primaryAuthToken(rec.accountSid));
  },
  async cleanup(ctx, rec, entry) {
    const ops = credentialOps(ctx, 'auth-token');
    const primary = await ops.primaryAuthToken(rec.accountSid);
    for (const [stage, v] of Object.entries(entry)) {
      if (!v || v.credential.apiKeySid === authTokenId(primary)) continue;
      if (await ops.authTokenWorks(rec.accountSid, v.credential.apiKeySecret)) {
        throw new PermanentError('auth_token_secondary_held', `the store's ${stage} stage of ${credentialOf(rec)} holds a token of ${rec.accountSid} that is not its primary and still works (a secondary Auth Token another rotation staged): finish or undo that rotation first`);
      }
    }
    // A secondary no stage holds: its value was lost by a run that died after creating it.
    await ops.deleteSecondaryAuthToken(rec.accountSid, primary);
    return [];
  },
  async create(ctx, rec) {
    const ops = credentialOps(ctx, 'auth-token');
    const secondary = await ops.createSecondaryAuthToken(rec.accountSid, await ops.primaryAuthToken(rec.accountSid));
    return authTokenCredential(rec.accountSid, secondary);
  },
  async verify(ctx, rec, c) {
    const ops = credentialOps(ctx, 'auth-token');
    await verifyWithPropagation(async () => {
      if (!(await ops.authTokenWorks(c.accountSid, c.apiKeySecret))) {
        throw new PermanentError('twilio_new_key_unauthorized', `Twilio refuses the new Auth Token ${c.apiKeySid} of ${credentialOf(rec)}`);
      }
    });
    return 'verified';
  },
  async makePrimary(ctx, rec, current) {
    const ops = credentialOps(ctx, 'auth-token');
    const primary = await ops.primaryAuthToken(rec.accountSid);
    // A run that died after promoting: Twilio already has the new token as its primary.
    if (authTokenId(primary) === current.apiKeySid) return 'new Auth Token already primary at Twilio (an earlier run promoted it)';
    await ops.promoteSecondaryAuthToken(rec.accountSid, current.apiKeySecret);
    ctx.crash('promote:after-twilio-promote');
    return 'secondary Auth Token promoted at Twilio: the old token no longer works';
  },
  async retireOld(ctx, rec, old, entry) {
    const previous = entry.previous?.credential.apiKeySid === old ? entry.previous.credential : undefined;
    if (previous && (await credentialOps(ctx, 'auth-token').authTokenWorks(rec.accountSid, previous.apiKeySecret))) {
      throw new PermanentError('auth_token_old_still_valid', `the old Auth Token ${old} of ${credentialOf(rec)} still works at Twilio: the promotion did not take; retry the rotation`);
    }
    return 'nothing to delete at Twilio: the old Auth Token stopped working at promotion';
  },
  async assertUndoable(ctx, rec) {
    await primaryUnlessPromoted(ctx, rec);
  },
  async discardNew(ctx, rec) {
    const ops = credentialOps(ctx, 'auth-token');
    const primary = await primaryUnlessPromoted(ctx, rec);
    const result = await ops.deleteSecondaryAuthToken(rec.accountSid, primary);
    return result === 'deleted' ? `deleted the secondary Auth Token ${rec.newKeySid ?? ''}`.trim() : 'no secondary Auth Token to delete';
  },
  async dryRun(ctx, rec, entry) {
    const primary = await credentialOps(ctx, 'auth-token').primaryAuthToken(rec.accountSid);
    const current = entry.current?.credential.apiKeySid;
    const live = authTokenId(primary);
    const store = !current ? "the store holds no token yet (the live one is promoted away all the same)" : current === live ? `the store's current token ${current} is the live primary` : `WARNING: the store's current token ${current} is not the live primary ${live}`;
    return `dry run: would replace the Auth Token ${live} of ${rec.accountSid}; ${store}; depends on it: ${authTokenDependents(rec.accountSid).join('; ')}`;
  },
};

/** The account's primary token; throws when it is this rotation's new token (promoted: no undo). */
async function primaryUnlessPromoted(ctx: Parameters<KindSteps['create']>[0], rec: Parameters<KindSteps['create']>[1]) {
  const primary = await credentialOps(ctx, 'auth-token').primaryAuthToken(rec.accountSid);
  if (rec.newKeySid && authTokenId(primary) === rec.newKeySid) {
    throw new PermanentError('auth_token_promoted', `the new Auth Token ${rec.newKeySid} of ${credentialOf(rec)} is already the primary at Twilio and the old one no longer works: the rotation cannot be undone; retry it to finish`);
  }
  return primary;
}
