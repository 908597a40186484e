import type { Redis } from 'ioredis';
import { checkPolicy, DEFAULT_POLICIES, DEFAULT_POLICY_NAME, PolicyCatalog, PolicyValidationError, type CompiledPolicy, type Policy } from '../domain/policy.ts';
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
