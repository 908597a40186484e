import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { isTerminal, type RotationRecord } from '../../src/domain/rotation.ts';
import type { PromoteGate } from '../../workers/steps/context.ts';
import { testLogger, waitFor, type Stack } from './stack.ts';

/** API + worker in this process, on the stack's Redis, emulator and store. */
export async function startEngine(stack: Stack, env: Record<string, string> = {}, opts: { api?: boolean; worker?: boolean; gates?: PromoteGate[] } = {}): Promise<Runtime> {
  const cfg = loadConfig({ ...stack.env, ...env });
  return startRuntime(cfg, { api: opts.api ?? true, worker: opts.worker ?? true, log: testLogger(stack.logs), ...(opts.gates ? { gates: opts.gates } : {}) });
}

export async function startRotation(rt: Runtime, accountSid: string, reason = 'test'): Promise<RotationRecord> {
  const r = await rt.service.start({ accountSid, reason, trigger: 'api', requestedBy: 'test' });
  if (!r.started) throw new Error(`rotation already in flight for ${accountSid}: ${r.existing.id}`);
  return r.record;
}

/** Where a rotation stands, in one line: what a timeout message should say. */
export async function describeRotation(rt: Runtime, id: string): Promise<string> {
  const rec = await rt.repo.get(id);
  if (!rec) return `rotation ${id} not found`;
  const last = rec.history.at(-1);
  return `${rec.status} in ${rec.step}${rec.undo ? ` (undo: ${rec.undo.reason})` : ''}, last ${last ? `${last.step} ${last.status} at ${last.at}${last.detail ? ` (${last.detail})` : ''}` : 'nothing'}${rec.lastError ? `, last error ${rec.lastError.code}` : ''}`;
}

export async function waitFinished(rt: Runtime, id: string, timeoutMs = 60_000): Promise<RotationRecord> {
  return waitFor(`rotation ${id} to finish`, async () => {
    const rec = await rt.repo.get(id);
    return rec && isTerminal(rec.status) ? rec : undefined;
  }, timeoutMs, 25, () => describeRotation(rt, id));
}

/** The rotation as soon as it waits in promote (its drain, or a gate). */
export async function waitWaiting(rt: Runtime, id: string): Promise<RotationRecord> {
  return waitFor(`rotation ${id} to wait in promote`, async () => {
    const rec = await rt.repo.get(id);
    return rec?.status === 'waiting' && rec.step === 'promote' ? rec : undefined;
  }, 60_000, 25, () => describeRotation(rt, id));
}

/**
 * Holds the rotations of the subaccounts it is told to in promote, after their drain, until
 * released: a test that acts on a rotation while it drains (cancels it, revokes its key, takes the
 * store down) does so while the rotation is certainly still there, however long the test took to
 * get there. Without it the action raced the end of a drain of a few hundred milliseconds, and a
 * slow test found the rotation already past promote.
 */
export class PromoteHold implements PromoteGate {
  readonly name = 'test hold';
  readonly #held = new Set<string>();
  hold(accountSid: string): void {
    this.#held.add(accountSid);
  }
  release(accountSid: string): void {
    this.#held.delete(accountSid);
  }
  async check(rec: RotationRecord, now: number): Promise<{ ready: true } | { ready: false; retryAt: number; reason: string }> {
    return this.#held.has(rec.accountSid) ? { ready: false, retryAt: now + 100, reason: 'held by the test' } : { ready: true };
  }
}

/**
 * The end state every rotation must leave: exactly one key at Twilio for the subaccount, it is
 * the store's current one, and no pending or previous stage lingers.
 */
export async function expectSettled(stack: Stack, accountSid: string): Promise<{ ok: boolean; problems: string[]; currentKeySid?: string }> {
  const problems: string[] = [];
  const entry = await stack.store.read(stack.path(accountSid));
  const keys = stack.emu.listKeys(accountSid).map((k) => k.sid);
  const current = entry.current?.credential.apiKeySid;
  if (!current) problems.push('store has no current key');
  if (keys.length !== 1) problems.push(`Twilio has ${keys.length} keys (${keys.join(', ')})`);
  if (current && !keys.includes(current)) problems.push(`store current ${current} is not at Twilio`);
  if (entry.pending) problems.push(`pending stage lingers (${entry.pending.credential.apiKeySid})`);
  if (entry.previous) problems.push(`previous stage lingers (${entry.previous.credential.apiKeySid})`);
  return { ok: problems.length === 0, problems, ...(current ? { currentKeySid: current } : {}) };
}
