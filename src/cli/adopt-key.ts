import { ConfigError, loadConfig } from '../config.ts';
import { openSecretStore } from '../stores.ts';
import { secretPath } from '../../providers/secret-store.ts';
import { ACCOUNT_SID } from '../domain/rotation.ts';
import { DEFAULT_CREDENTIAL, isCredentialName, CREDENTIAL_NAME_RULE } from '../domain/credential.ts';
import { Secret } from '../domain/secret.ts';
import { TwilioAdmin } from '../twilio/admin.ts';
import { subaccountVerdict } from '../domain/subaccount.ts';
import type { CredentialKind } from '../domain/credential.ts';
import { managedKind } from './managed-kind.ts';

/**
 * `npm run adopt-key -- <accountSid> [credential]`, the key on stdin as JSON
 * (`{"apiKeySid":"SK…","apiKeySecret":"…"}`): puts a key your applications already use into the
 * store as the credential's current version, so the first rotation replaces it (and deletes it at
 * Twilio once the drain has passed) instead of bootstrapping a second key beside it.
 *
 * The secret is read from stdin only — never from the command line, where it would land in shell
 * history and `ps`. The key must be one of the subaccount's keys at Twilio and must work (one
 * authenticated read with it) before anything is written; a credential that already has a current
 * version is left alone. Exit 0 adopted, 1 refused, 2 bad usage or configuration.
 *
 * The credential's kind is the managed credential's (Redis; an unmanaged credential is an
 * api-key). A `restricted-key` credential can only be bootstrapped this way: its rotation copies
 * the current key's policy, so the key offered must be a restricted key of the subaccount (IAM v1
 * lists it with that AccountSid and reads it back with a policy), and it must authenticate (a call
 * its policy allows). Conversely a restricted key is refused for an `api-key` credential, whose
 * rotation would replace it with a Standard key and its full rights. An `auth-token` credential
 * has nothing to adopt. Only the store receives the secret; Redis is only read.
 */
const USAGE = 'usage: echo \'{"apiKeySid":"SK…","apiKeySecret":"…"}\' | npm run adopt-key -- <accountSid> [credential]';
const KEY_SID = /^SK[0-9a-f]{32}$/;

class Refused extends Error {}

async function main(): Promise<number> {
  const [accountSid, name = DEFAULT_CREDENTIAL, ...extra] = process.argv.slice(2);
  if (!accountSid || !ACCOUNT_SID.test(accountSid) || extra.length) throw new UsageError(`the subaccount SID (AC + 32 hex digits) is required, and nothing after the credential name\n${USAGE}`);
  if (!isCredentialName(name)) throw new UsageError(`credential "${name}" is not allowed: ${CREDENTIAL_NAME_RULE}`);
  const input = await readStdin();
  let parsed: { apiKeySid?: unknown; apiKeySecret?: unknown };
  try {
    parsed = JSON.parse(input) as typeof parsed;
  } catch {
    throw new UsageError(`stdin must be JSON: {"apiKeySid":"SK…","apiKeySecret":"…"}\n${USAGE}`);
  }
  if (typeof parsed.apiKeySid !== 'string' || !KEY_SID.test(parsed.apiKeySid) || typeof parsed.apiKeySecret !== 'string' || parsed.apiKeySecret.length === 0) {
    throw new UsageError('stdin must hold apiKeySid (SK + 32 hex digits) and apiKeySecret (a non-empty string)');
  }
  const keySid = parsed.apiKeySid;
  const keySecret = new Secret(parsed.apiKeySecret);

  const cfg = loadConfig();
  // Not the worker's Redis-backed cap: one command makes four or five requests.
  const twilio = new TwilioAdmin({ credential: cfg.twilio!, baseUrl: cfg.twilioBaseUrl, timeoutMs: cfg.twilioTimeoutMs, gate: { acquire: async () => () => undefined } });
  const verdict = subaccountVerdict(accountSid, cfg.twilio!.accountSid, await twilio.fetchAccount(accountSid));
  if (!verdict.ok) throw new Refused(verdict.message);
  const kind = await managedKind(cfg, { accountSid, name });
  await checkKey(twilio, kind, accountSid, keySid, keySecret);

  const store = await openSecretStore(cfg.store);
  try {
    const path = secretPath(cfg.secretPathTemplate, accountSid, name);
    const entry = await store.read(path);
    if (entry.current) {
      if (entry.current.credential.apiKeySid === keySid) {
        console.log(`${keySid} is already the current key of ${accountSid}/${name} (${path})`);
        return 0;
      }
      throw new Refused(`${accountSid}/${name} already has a current key (${entry.current.credential.apiKeySid}) at ${path}: rotate it instead of adopting another`);
    }
    // The same staging a rotation uses, so every store's idempotency rules apply; the id only
    // names the version (it is not a rotation on record).
    const adoptionId = crypto.randomUUID();
    await store.putPending(path, adoptionId, { accountSid, apiKeySid: keySid, apiKeySecret: keySecret });
    await store.promotePending(path, adoptionId, keySid);
    const copies = kind === 'restricted-key' ? ' with a key carrying the same policy' : '';
    console.log(`adopted ${kind === 'restricted-key' ? 'restricted key ' : ''}${keySid} as the current key of ${accountSid}/${name} (${path}); the next rotation replaces it${copies}`);
    return 0;
  } finally {
    await store.close();
  }
}

class UsageError extends Error {}

/** The key must be the subaccount's, of the credential's kind, and must work; anything else is refused before the store is touched. */
async function checkKey(twilio: TwilioAdmin, kind: CredentialKind, accountSid: string, keySid: string, secret: Secret): Promise<void> {
  if (kind === 'auth-token') throw new Refused(`${accountSid} manages this credential as an auth-token: its rotation starts from the account's own Auth Token, there is no key to adopt`);
  if (kind === 'restricted-key') {
    if (!(await twilio.listIamKeys(accountSid)).some((k) => k.sid === keySid)) throw new Refused(`${keySid} is not one of ${accountSid}'s API keys at Twilio (IAM v1)`);
    const policy = await twilio.fetchKeyPolicy(accountSid, keySid);
    if (policy === undefined) throw new Refused(`${keySid} is not one of ${accountSid}'s API keys at Twilio (IAM v1)`);
    if (policy === null) {
      throw new Refused(`${keySid} is not a restricted key (Twilio reports no policy), but the credential is of kind restricted-key, whose rotations copy the current key's policy: adopt a restricted key, or manage the credential as kind api-key`);
    }
    await twilio.verifyRestrictedKey(accountSid, keySid, secret, policy);
    return;
  }
  if (!(await twilio.listKeys(accountSid)).some((k) => k.sid === keySid)) throw new Refused(`${keySid} is not one of ${accountSid}'s API keys at Twilio`);
  if ((await twilio.fetchKeyPolicy(accountSid, keySid)) != null) {
    throw new Refused(`${keySid} is a restricted key, but the credential is of kind api-key, whose rotation would replace it with a Standard key (full rights): manage the credential as kind restricted-key first`);
  }
  await twilio.verifyKey(accountSid, keySid, secret);
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    if (process.stdin.isTTY) return reject(new UsageError(`pipe the key in on stdin\n${USAGE}`));
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => (text += d));
    process.stdin.once('end', () => resolve(text));
    process.stdin.once('error', reject);
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof Refused) {
      console.error(`adopt-key: refused: ${err.message}`);
      process.exit(1);
    }
    const usage = err instanceof UsageError || err instanceof ConfigError;
    console.error(`adopt-key: ${usage ? '' : 'failed: '}${(err as Error).message}`);
    process.exit(usage ? 2 : 1);
  },
);
