/**
 * Managed credentials: the unit Rotator rotates, schedules and reports on. A managed credential is
 * (subaccount, name) — one key per application and environment, as Twilio advises — with its own
 * secret path, lock, rotations, policy and history. Pure: no I/O.
 *
 * The shared rules of every fleet route live here too (field errors, names, labels), so policies,
 * batches, labels and the API read one definition.
 */

/**
 * What is being rotated: a Standard API key (v2010), a restricted API key (IAM v1, the new key
 * copies the old one's policy), or the subaccount's Auth Token (Accounts v1 secondary and promote;
 * guarded: see `authTokenRefusal` in src/domain/auth-token.ts).
 */
export const CREDENTIAL_KINDS = ['api-key', 'restricted-key', 'auth-token'] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

/** The credential every subaccount has, and the one `POST /v1/rotations {accountSid}` means. */
export const DEFAULT_CREDENTIAL = 'default';

/**
 * A credential's name: it appears in secret paths, Redis keys and metrics, so DNS-label-like and
 * short. `pending` is refused: the Vault store keeps a secret's pending version at `<path>/pending`,
 * so a credential of that name would share its sibling's staging slot.
 */
export const CREDENTIAL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const RESERVED_NAMES: ReadonlySet<string> = new Set(['pending']);

export function isCredentialName(name: unknown): name is string {
  return typeof name === 'string' && CREDENTIAL_NAME.test(name) && !RESERVED_NAMES.has(name);
}

export const CREDENTIAL_NAME_RULE = 'a lower-case name of 1–63 characters (a-z, 0-9, "_", "-"), starting with a letter or digit; "pending" is reserved';

/**
 * A label is `word` or `key=value`, all lower case so `HIPAA` and `hipaa` cannot mean two things.
 * Policies assign by label, batches select by label, PATCH /v1/accounts sets them: one rule.
 */
export const LABEL = /^[a-z0-9][a-z0-9_.-]{0,62}(?:=[a-z0-9][a-z0-9_.-]{0,62})?$/;

export function isValidLabel(label: unknown): label is string {
  return typeof label === 'string' && LABEL.test(label);
}

export interface CredentialRef {
  accountSid: string;
  name: string;
}

/** `AC…/name`, as operators write it; also the planner's hash input and the batch's claim key. */
export function credentialId(ref: CredentialRef): string {
  return `${ref.accountSid}/${ref.name}`;
}

export function parseCredentialId(id: string): CredentialRef {
  const slash = id.indexOf('/');
  return slash < 0 ? { accountSid: id, name: DEFAULT_CREDENTIAL } : { accountSid: id.slice(0, slash), name: id.slice(slash + 1) };
}

/**
 * Where a credential's secret lives. `SECRET_PATH_TEMPLATE` may use `{accountSid}` and `{name}`.
 * Without `{name}` (the default `twilio/{accountSid}`), the `default` credential keeps exactly the
 * path earlier versions wrote, so existing stores keep working, and any other credential lives one
 * level below it (`twilio/AC…/billing-prod`).
 */
export function credentialSecretPath(template: string, ref: CredentialRef): string {
  const base = template.replaceAll('{accountSid}', ref.accountSid);
  if (template.includes('{name}')) return base.replaceAll('{name}', ref.name);
  return ref.name === DEFAULT_CREDENTIAL ? base : `${base}/${ref.name}`;
}

/** One problem with a request, named by where it is: `waves.canary`, `windows[0].hours[1].to`. */
export interface FieldError {
  path: string;
  message: string;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

export function describeFieldErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}`).join('; ');
}
