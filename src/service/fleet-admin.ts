import { CREDENTIAL_KINDS, CREDENTIAL_NAME_RULE, credentialId, DEFAULT_CREDENTIAL, isCredentialName, isValidLabel, type CredentialKind, type CredentialRef, type FieldError } from '../domain/credential.ts';
import { checkPolicy, type Policy } from '../domain/policy.ts';
import type { AccountRecord, AccountRepository } from '../state/accounts.ts';
import type { CredentialRepository, ManagedCredential } from '../state/credentials.ts';
import { UnknownPolicyError, type PolicyDeletion, type PolicyRepository } from '../state/policies.ts';
import { managedOnSight, type ManageMode } from './accounts.ts';

/**
 * The fleet's writes through the API: labels, overrides and pauses of subaccounts and credentials,
 * new credentials, policies. Each checks its input (every problem named by field), writes, and
 * tells the planner which credentials' schedules may have moved. The HTTP layer maps the results.
 */

/** Told after a write that may move credentials' schedules (the planner re-plans them); `all` after a policy change. */
export type FleetChangeListener = (credentialIds: string[] | 'all') => Promise<void>;

export interface FleetAdminDeps {
  accounts: Pick<AccountRepository, 'get' | 'patch'>;
  credentials: Pick<CredentialRepository, 'get' | 'ensure' | 'patch' | 'forAccount'>;
  policies: Pick<PolicyRepository, 'catalog' | 'get' | 'put' | 'deleteUnlessUsed' | 'isBuiltIn'>;
  /** MANAGE_NEW_SUBACCOUNTS: whether labelling a subaccount starts managing its `default` credential. */
  manage: ManageMode;
  onFleetChange?: FleetChangeListener;
  /** A failed notification is logged, not answered: the write happened. */
  warn: (message: string, err: Error) => void;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

export interface AccountChange {
  labels?: string[];
  policy?: string | null;
  paused?: boolean;
  /** Allow Auth Token rotation for this account (admin only: the route checks the role). */
  authTokenRotation?: boolean;
}

export interface AccountPatched {
  account: AccountRecord;
  /** What changed, for the audit trail: `labels [] → [hipaa]; paused false → true`. Empty when nothing did. */
  changes: string[];
  /** The `default` credential this change started managing (MANAGE_NEW_SUBACCOUNTS=label or all), if any. */
  managed: string | null;
}

export interface CredentialChange {
  policy?: string | null;
  paused?: boolean;
}

/** What is wrong with a credential to be managed: its name (CREDENTIAL_NAME_RULE) and kind. */
export function newCredentialErrors(ref: CredentialRef, kind: string = 'api-key'): FieldError[] {
  const errors: FieldError[] = [];
  if (!isCredentialName(ref.name)) errors.push({ path: 'name', message: `must be ${CREDENTIAL_NAME_RULE}` });
  if (!(CREDENTIAL_KINDS as readonly string[]).includes(kind)) errors.push({ path: 'kind', message: `must be one of ${CREDENTIAL_KINDS.join(', ')}` });
  return errors;
}

export class FleetAdmin {
  readonly #d: FleetAdminDeps;

  constructor(deps: FleetAdminDeps) {
    this.#d = deps;
  }

  /** Undefined when the inventory has no such subaccount. */
  async patchAccount(sid: string, change: AccountChange): Promise<Checked<AccountPatched> | undefined> {
    const errors: FieldError[] = [];
    if (change.labels === undefined && change.policy === undefined && change.paused === undefined && change.authTokenRotation === undefined) errors.push({ path: '(body)', message: 'nothing to change: give labels, policy, paused or authTokenRotation' });
    change.labels?.forEach((l, i) => {
      if (!isValidLabel(l)) errors.push({ path: `labels[${i}]`, message: `${JSON.stringify(String(l).slice(0, 64))} is not a label: a lower-case word, or key=value (e.g. hipaa, tier=gold; a-z, 0-9, "_", ".", "-"; each part 1–63 characters)` });
    });
    errors.push(...(await this.#checkPolicyName(change.policy)));
    if (errors.length) return { ok: false, errors };

    const before = await this.#d.accounts.get(sid);
    if (!before) return undefined;
    const after = await this.#write('policy', () => this.#d.accounts.patch(sid, change, { requireStoredPolicy: this.#mustBeStored(change.policy) }));
    if (!after.ok) return after;
    const account = after.value;
    if (!account) return undefined;

    const changes: string[] = [];
    const show = (l: readonly string[]) => `[${l.join(', ')}]`;
    if (change.labels !== undefined && show(before.labels) !== show(account.labels)) changes.push(`labels ${show(before.labels)} → ${show(account.labels)}`);
    if (change.policy !== undefined && before.policyOverride !== account.policyOverride) changes.push(`policy ${before.policyOverride ?? 'none'} → ${account.policyOverride ?? 'none'}`);
    if (change.paused !== undefined && before.paused !== account.paused) changes.push(`paused ${before.paused} → ${account.paused}`);
    if (change.authTokenRotation !== undefined && before.authTokenRotation !== account.authTokenRotation) changes.push(`AUTH TOKEN ROTATION ${account.authTokenRotation ? 'ENABLED' : 'disabled'}`);

    // Labelling a subaccount under MANAGE_NEW_SUBACCOUNTS=label manages it at once, not at the next sync.
    let managed: string | null = null;
    if (managedOnSight(this.#d.manage, account) && (await this.#d.credentials.ensure({ accountSid: sid, name: DEFAULT_CREDENTIAL }))) {
      managed = credentialId({ accountSid: sid, name: DEFAULT_CREDENTIAL });
      changes.push(`now manages ${DEFAULT_CREDENTIAL} (MANAGE_NEW_SUBACCOUNTS=${this.#d.manage})`);
    }
    if (changes.length) await this.#notify((await this.#d.credentials.forAccount(sid)).map((c) => credentialId(c)));
    return { ok: true, value: { account, changes, managed } };
  }

  /**
   * Start managing a credential of a subaccount (the caller has checked the subaccount). Idempotent:
   * the same name and kind again is `created: false`; another kind under an existing name is a conflict.
   */
  async addCredential(ref: CredentialRef, kind: CredentialKind = 'api-key'): Promise<Checked<{ credential: ManagedCredential; created: boolean } | { conflict: string }>> {
    const errors = newCredentialErrors(ref, kind);
    if (errors.length) return { ok: false, errors };
    const existing = await this.#d.credentials.get(ref);
    if (existing) {
      if (existing.kind !== kind) return { ok: true, value: { conflict: `${credentialId(ref)} is already managed as a ${existing.kind}, not a ${kind}` } };
      return { ok: true, value: { credential: existing, created: false } };
    }
    const created = await this.#d.credentials.ensure(ref, { kind });
    const credential = (await this.#d.credentials.get(ref))!;
    if (created) await this.#notify([credentialId(ref)]);
    return { ok: true, value: { credential, created } };
  }

  /** Undefined when the credential is not managed. */
  async patchCredential(ref: CredentialRef, change: CredentialChange): Promise<Checked<{ credential: ManagedCredential; changes: string[] }> | undefined> {
    const errors: FieldError[] = [];
    if (change.policy === undefined && change.paused === undefined) errors.push({ path: '(body)', message: 'nothing to change: give policy or paused' });
    errors.push(...(await this.#checkPolicyName(change.policy)));
    if (errors.length) return { ok: false, errors };
    const before = await this.#d.credentials.get(ref);
    if (!before) return undefined;
    const after = await this.#write('policy', () => this.#d.credentials.patch(ref, change, Date.now(), { requireStoredPolicy: this.#mustBeStored(change.policy) }));
    if (!after.ok) return after;
    const credential = after.value;
    const changes: string[] = [];
    if (change.policy !== undefined && before.policy !== credential.policy) changes.push(`policy ${before.policy ?? 'none'} → ${credential.policy ?? 'none'}`);
    if (change.paused !== undefined && before.paused !== credential.paused) changes.push(`paused ${before.paused} → ${credential.paused}`);
    if (changes.length) await this.#notify([credentialId(ref)]);
    return { ok: true, value: { credential, changes } };
  }

  /**
   * Create or replace a policy. The name in the path is the policy's: a body without one takes it,
   * a body naming another is refused (a PUT never writes somewhere other than its URL).
   */
  async putPolicy(name: string, body: unknown): Promise<Checked<{ policy: Policy; created: boolean }>> {
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
      const given = (body as { name?: unknown }).name;
      if (given !== undefined && given !== name) {
        const rest = checkPolicy({ ...body, name });
        const mismatch = { path: 'name', message: `${JSON.stringify(given)} does not match the name in the path ("${name}"): leave it out or make them equal` };
        return { ok: false, errors: [mismatch, ...(rest.ok ? [] : rest.errors)] };
      }
      body = { ...body, name };
    }
    const checked = checkPolicy(body);
    if (!checked.ok) return checked;
    const created = (await this.#d.policies.get(name)) === undefined;
    await this.#d.policies.put(checked.value.source);
    await this.#notify('all');
    return { ok: true, value: { policy: checked.value.source, created } };
  }

  /** Delete a stored policy (a built-in one reverts to its definition); refused while an override names a policy that would be gone. */
  async deletePolicy(name: string): Promise<PolicyDeletion & { revertedTo?: Policy }> {
    const r = await this.#d.policies.deleteUnlessUsed(name);
    if (r.result !== 'deleted') return r;
    await this.#notify('all');
    return this.#d.policies.isBuiltIn(name) ? { ...r, revertedTo: await this.#d.policies.get(name) } : r;
  }

  async #checkPolicyName(name: string | null | undefined): Promise<FieldError[]> {
    if (name === undefined || name === null) return [];
    const catalog = await this.#d.policies.catalog();
    if (catalog.get(name)) return [];
    return [{ path: 'policy', message: `unknown policy ${JSON.stringify(name.slice(0, 64))} (policies: ${catalog.list().map((p) => p.name).join(', ')}); null clears the override` }];
  }

  /** A named policy that is not built in must still be stored when the override is written (checked in the write's script). */
  #mustBeStored(name: string | null | undefined): boolean {
    return typeof name === 'string' && !this.#d.policies.isBuiltIn(name);
  }

  /** The write, with a policy deleted since the check reported as the field's error. */
  async #write<T>(field: string, write: () => Promise<T>): Promise<Checked<T>> {
    try {
      return { ok: true, value: await write() };
    } catch (err) {
      if (err instanceof UnknownPolicyError) return { ok: false, errors: [{ path: field, message: `${err.message}: it was deleted while this request ran` }] };
      throw err;
    }
  }

  async #notify(ids: string[] | 'all'): Promise<void> {
    if (!this.#d.onFleetChange || (ids !== 'all' && ids.length === 0)) return;
    try {
      await this.#d.onFleetChange(ids);
    } catch (err) {
      this.#d.warn('could not tell the planner about a fleet change: the schedule of these credentials may be stale until it re-plans them', err as Error);
    }
  }
}
