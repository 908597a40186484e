import { credentialId, type CredentialRef } from '../domain/credential.ts';
import { resolvePolicy, type Assignment, type PolicyCatalog } from '../domain/policy.ts';
import type { AccountRecord, AccountRepository } from '../state/accounts.ts';
import type { CredentialRepository, ManagedCredential } from '../state/credentials.ts';
import type { PolicyRepository } from '../state/policies.ts';

/**
 * One managed credential with everything the fleet features decide on: its subaccount (status,
 * labels, account-level override and pause), the policy that applies and why. The planner, batches,
 * the compliance report and the accounts API all read the fleet through this, so they agree.
 */
export interface FleetEntry {
  id: string;
  credential: ManagedCredential;
  /** Undefined when the subaccount is not in the inventory (a credential rotated before any sync). */
  account: AccountRecord | undefined;
  /** The subaccount's status at Twilio as the inventory last saw it (`active` when unknown). */
  subaccountStatus: string;
  labels: readonly string[];
  /** Why nothing is started automatically, or null: the credential or its subaccount is paused. */
  paused: 'credential' | 'account' | null;
  assignment: Assignment;
}

export interface FleetDirectoryDeps {
  credentials: CredentialRepository;
  accounts: Pick<AccountRepository, 'getMany'>;
  policies: Pick<PolicyRepository, 'catalog'>;
}

export class FleetDirectory {
  readonly #d: FleetDirectoryDeps;

  constructor(deps: FleetDirectoryDeps) {
    this.#d = deps;
  }

  get credentials(): CredentialRepository {
    return this.#d.credentials;
  }

  async describe(ref: CredentialRef): Promise<FleetEntry | undefined> {
    const c = await this.#d.credentials.get(ref);
    return c ? (await this.join([c]))[0] : undefined;
  }

  /** The entries of `creds`, in order: one read of their accounts and one of the catalog. */
  async join(creds: readonly ManagedCredential[], catalog?: PolicyCatalog): Promise<FleetEntry[]> {
    if (creds.length === 0) return [];
    const sids = [...new Set(creds.map((c) => c.accountSid))];
    const [accounts, cat] = await Promise.all([this.#d.accounts.getMany(sids), catalog ?? this.#d.policies.catalog()]);
    const bySid = new Map(accounts.map((a) => [a.accountSid, a]));
    return creds.map((c) => entryOf(c, bySid.get(c.accountSid), cat));
  }

  /** Every managed credential, in id order, a page at a time. */
  async *entries(batch = 1000): AsyncGenerator<FleetEntry[]> {
    const catalog = await this.#d.policies.catalog();
    for await (const page of this.#d.credentials.all(batch)) yield this.join(page, catalog);
  }
}

export function entryOf(c: ManagedCredential, account: AccountRecord | undefined, catalog: PolicyCatalog): FleetEntry {
  const id = credentialId(c);
  const labels = account?.labels ?? [];
  return {
    id,
    credential: c,
    account,
    subaccountStatus: account?.status ?? 'active',
    labels,
    paused: c.paused ? 'credential' : account?.paused ? 'account' : null,
    assignment: assignmentOf(id, labels, account?.policyOverride ?? null, c.policy, catalog),
  };
}

/**
 * resolvePolicy, remembered per catalog (a new catalog object whenever a policy changes, see
 * PolicyRepository) and per (labels, account override, credential override): all it depends on
 * (the credential's id is not read), and a fleet has few distinct combinations while a page or a
 * planner pass resolves one per credential. Bounded, for a fleet with very many label sets.
 */
const assignments = new WeakMap<PolicyCatalog, Map<string, Assignment>>();
const MAX_ASSIGNMENTS = 10_000;

function assignmentOf(credentialId: string, labels: readonly string[], accountPolicy: string | null, credentialPolicy: string | null, catalog: PolicyCatalog): Assignment {
  let memo = assignments.get(catalog);
  if (!memo) assignments.set(catalog, (memo = new Map()));
  // Labels and policy names never hold a NUL (their patterns), so the key is unambiguous.
  const key = `${accountPolicy ?? ''}\0${credentialPolicy ?? ''}\0${labels.join('\0')}`;
  let a = memo.get(key);
  if (!a) {
    a = resolvePolicy({ credentialId, labels, accountPolicy, credentialPolicy }, catalog);
    if (memo.size >= MAX_ASSIGNMENTS) memo.clear();
    memo.set(key, a);
  }
  return a;
}
