import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { isTerminal, type RotationRecord } from '../../src/domain/rotation.ts';
import { testLogger, waitFor, type Stack } from './stack.ts';

/** API + worker in this process, on the stack's Redis, emulator and store. */
export async function startEngine(stack: Stack, env: Record<string, string> = {}, opts: { api?: boolean; worker?: boolean } = {}): Promise<Runtime> {
  const cfg = loadConfig({ ...stack.env, ...env });
  return startRuntime(cfg, { api: opts.api ?? true, worker: opts.worker ?? true, log: testLogger(stack.logs) });
}

export async function startRotation(rt: Runtime, accountSid: string, reason = 'test'): Promise<RotationRecord> {
  const r = await rt.service.start({ accountSid, reason, trigger: 'api', requestedBy: 'test' });
  if (!r.started) throw new Error(`rotation already in flight for ${accountSid}: ${r.existing.id}`);
  return r.record;
}

export async function waitFinished(rt: Runtime, id: string, timeoutMs = 60_000): Promise<RotationRecord> {
  return waitFor(`rotation ${id} to finish`, async () => {
    const rec = await rt.repo.get(id);
    return rec && isTerminal(rec.status) ? rec : undefined;
  }, timeoutMs, 25);
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
