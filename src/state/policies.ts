import type { Redis } from 'ioredis';
import { checkPolicy, DEFAULT_POLICIES, DEFAULT_POLICY_NAME, PolicyCatalog, PolicyValidationError, type CompiledPolicy, type Policy } from '../domain/policy.ts';
import { PermanentError } from '../domain/errors.ts';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';

/**
 * Named rotation policies in Redis: a hash name → policy JSON as the API wrote it, and a version
 * counter bumped in the same script as every change, so each process keeps one compiled catalog
 * and re-reads it only when the counter moved (one GET per use instead of a hash read and a
 * compile). Until an admin writes one, the catalog is the built-in defaults (`default` P90D,
 * `hipaa` P30D for the label); a stored policy of the same name replaces a built-in one.
 */

// KEYS: hash, version. ARGV: name, json ('' deletes)
const WRITE = `
if ARGV[2] == '' then
  if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('INCR', KEYS[2])
`;

// KEYS: hash, version, users of the policy. ARGV: name, builtIn ('1': a delete reverts it, so overrides may keep naming it), how many users to name
// A policy an override still names is not deleted (answer {-2, count, some users}); else as WRITE.
const DELETE_UNLESS_USED = `
if ARGV[2] ~= '1' then
  local n = redis.call('SCARD', KEYS[3])
  if n > 0 then return {-2, n, redis.call('SRANDMEMBER', KEYS[3], tonumber(ARGV[3]))} end
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {-1} end
return {redis.call('INCR', KEYS[2])}
`;

/** An override named a policy that is not stored (deleted meanwhile, or never written). */
export class UnknownPolicyError extends PermanentError {
  constructor(name: string) {
    super('unknown_policy', `unknown policy "${name}"`);
    this.name = 'UnknownPolicyError';
  }
}

/** The override scripts' `unknown_policy` reply as an UnknownPolicyError; any other error as it is. */
export function unknownPolicy(err: Error, name: string | null | undefined): Error {
  return String(err.message).includes('unknown_policy') ? new UnknownPolicyError(String(name)) : err;
}

/** What deleting a policy did: `deleted`; `absent` (nothing stored under the name); `in use` (refused, with who names it). */
export type PolicyDeletion = { result: 'deleted' | 'absent' } | { result: 'in use'; count: number; users: string[] };

export class PolicyRepository {
  readonly #redis: Redis;
  readonly keys: RedisKeys;
  readonly #builtIn: readonly Policy[];
  #cached: { version: string; catalog: PolicyCatalog; policies: Policy[] } | undefined;

  /** `builtIn`: the policies in force before any is stored (DEFAULT_POLICIES, or those ROTATION_POLICY implies). */
  constructor(redis: Redis, prefix: string, builtIn: readonly Policy[] = DEFAULT_POLICIES) {
    this.#redis = redis;
    this.keys = redisKeys(prefix);
    this.#builtIn = builtIn;
  }

  /** The catalog in force (compiled; cached until a policy changes). */
  async catalog(): Promise<PolicyCatalog> {
    return (await this.#current()).catalog;
  }

  /** Every policy in force, as written (built-ins not replaced included), by name. */
  async list(): Promise<Policy[]> {
    return (await this.#current()).policies;
  }

  async get(name: string): Promise<Policy | undefined> {
    return (await this.list()).find((p) => p.name === name);
  }

  /** Whether `name` is one of the built-in policies (which a delete resets rather than removes). */
  isBuiltIn(name: string): boolean {
    return this.#builtIn.some((p) => p.name === name);
  }

  /** Create or replace a policy. Throws PolicyValidationError (400) on bad input, naming each field. */
  async put(input: unknown): Promise<CompiledPolicy> {
    const checked = checkPolicy(input);
    if (!checked.ok) throw new PolicyValidationError(checked.errors);
    // The catalog as it would be must still compile (e.g. no two policies of one name).
    const policy = checked.value.source;
    await runScript(this.#redis, WRITE, 2, this.keys.policies, this.keys.policiesVersion, policy.name, JSON.stringify(policy));
    this.#cached = undefined;
    return checked.value;
  }

  /** Remove a stored policy; a built-in one falls back to its built-in definition. False when nothing was stored under the name. */
  async delete(name: string): Promise<boolean> {
    const r = await runScript(this.#redis, WRITE, 2, this.keys.policies, this.keys.policiesVersion, name, '');
    this.#cached = undefined;
    return r !== -1;
  }

  /**
   * Remove a stored policy unless an account or credential override still names it (refused
   * atomically: an override written at the same time either lands first and refuses the delete,
   * or finds the policy gone). A built-in policy reverts to its definition, which overrides may keep
   * naming. `users` lists up to `name` of those who name it (account SIDs, credential ids), sorted.
   */
  async deleteUnlessUsed(name: string, opts: { name?: number } = {}): Promise<PolicyDeletion> {
    const r = (await runScript(this.#redis, DELETE_UNLESS_USED, 3, this.keys.policies, this.keys.policiesVersion, this.keys.policyUsers(name), name, this.isBuiltIn(name) ? '1' : '0', String(opts.name ?? 20))) as [number, number?, string[]?];
    this.#cached = undefined;
    if (r[0] === -2) return { result: 'in use', count: Number(r[1]), users: [...(r[2] ?? [])].sort() };
    return { result: r[0] === -1 ? 'absent' : 'deleted' };
  }

  /** How many overrides (accounts and credentials) name each of `names`, in order. */
  async overrideCounts(names: readonly string[]): Promise<number[]> {
    if (names.length === 0) return [];
    const pipe = this.#redis.pipeline();
    for (const n of names) pipe.scard(this.keys.policyUsers(n));
    return ((await pipe.exec()) ?? []).map(([err, n]) => {
      if (err) throw err;
      return Number(n);
    });
  }

  /** The version counter (changes whenever a policy does): the planner re-plans when it moves. */
  async version(): Promise<string> {
    return (await this.#redis.get(this.keys.policiesVersion)) ?? '0';
  }

  async #current(): Promise<{ catalog: PolicyCatalog; policies: Policy[] }> {
    const version = await this.version();
    if (this.#cached?.version === version) return this.#cached;
    const [stored, after] = await Promise.all([this.#redis.hgetall(this.keys.policies), this.version()]);
    const byName = new Map<string, Policy>(this.#builtIn.map((p) => [p.name, p]));
    for (const [name, json] of Object.entries(stored)) byName.set(name, JSON.parse(json) as Policy);
    const policies = [...byName.values()].sort((a, b) => (a.name === DEFAULT_POLICY_NAME ? -1 : b.name === DEFAULT_POLICY_NAME ? 1 : a.name.localeCompare(b.name)));
    const catalog = new PolicyCatalog(policies.map((p) => {
      const c = checkPolicy(p);
      if (!c.ok) throw new PolicyValidationError(c.errors);
      return c.value;
    }));
    // A change between the two reads: cache under the older version, so the next use reads again.
    this.#cached = { version: after === version ? version : '', catalog, policies };
    return this.#cached;
  }
}
