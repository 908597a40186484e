import { ConfigError, loadConfig } from '../config.ts';
import { openSecretStore } from '../stores.ts';
import { secretPath } from '../../providers/secret-store.ts';
import { ACCOUNT_SID } from '../domain/rotation.ts';
import { DEFAULT_CREDENTIAL, isCredentialName, CREDENTIAL_NAME_RULE } from '../domain/credential.ts';
import { Secret } from '../domain/secret.ts';
import { TwilioAdmin } from '../twilio/admin.ts';
import { subaccountVerdict } from '../domain/subaccount.ts';

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
  // Not the worker's Redis-backed cap: one command makes three requests.
  const twilio = new TwilioAdmin({ credential: cfg.twilio!, baseUrl: cfg.twilioBaseUrl, timeoutMs: cfg.twilioTimeoutMs, gate: { acquire: async () => () => undefined } });
  const verdict = subaccountVerdict(accountSid, cfg.twilio!.accountSid, await twilio.fetchAccount(accountSid));
  if (!verdict.ok) throw new Refused(verdict.message);
  if (!(await twilio.listKeys(accountSid)).some((k) => k.sid === keySid)) throw new Refused(`${keySid} is not one of ${accountSid}'s API keys at Twilio`);
  await twilio.verifyKey(accountSid, keySid, keySecret);

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
    console.log(`adopted ${keySid} as the current key of ${accountSid}/${name} (${path}); the next rotation replaces it`);
    return 0;
  } finally {
    await store.close();
  }
}

class UsageError extends Error {}

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
