import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config.ts';
import { openSecretStore } from '../../src/stores.ts';
import { secretPath, type SecretStore } from '../../providers/secret-store.ts';
import { Secret } from '../../src/domain/secret.ts';
import { isTerminal, type RotationRecord } from '../../src/domain/rotation.ts';
import { RotationRepository } from '../../src/state/rotations.ts';
import { AuditLog, redisChainSource, verifyAuditChain, type AuditEntry } from '../../src/state/audit.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { startTwilioEmulator } from '../emulators/twilio/server.ts';
import { startStoreBackend, type StoreKind } from '../helpers/stores.ts';
import { SimulatedConsumer, type ConsumerStats } from '../helpers/consumer.ts';
import { dumpRedis } from '../helpers/leaks.ts';
import { findSecretsFast as findSecrets } from './leaks.ts';
import { ChaosApi } from './api-client.ts';
import { freePort, sentinelChaosRedis, singleChaosRedis } from './redis.ts';
import { ManagedProcess, type ProcessLife } from './processes.ts';
import { KeyObserver } from './observer.ts';
import { buildSchedule, describeFault, Rng, type FaultEvent } from './schedule.ts';
import { checkAccount, checkAllTerminal, checkAuditCoverage, checkNothingUnfinished, isUnfinished } from './invariants.ts';

export interface ChaosOptions {
  store: StoreKind;
  seed: number;
  /** Start at least this many rotations… */
  rotations: number;
  /** …and keep going for at least this long. */
  minutes: number;
  workers: number;
  /** `sentinel`: a primary, a replica and three Sentinels, and the Redis fault is a failover (issue 18). Default: one redis-server, restarted. */
  redis?: 'single' | 'sentinel';
  /** Progress lines (faults as they happen, phases); silent when unset. */
  log?: (line: string) => void;
}

export interface ChaosReport {
  store: StoreKind;
  seed: number;
  rotations: { total: number; succeeded: number; failed: number; cancelled: number; rolled_back: number };
  kills: number;
  redisRestarts: number;
  /** Faults applied, and how many the seed scheduled: equal in a complete run. */
  faults: number;
  faultsScheduled: number;
  consumer401s: number;
  orphanKeys: number;
  violations: string[];
  durationMs: number;
  summary: string;
  details: Record<string, unknown>;
}

const SUBACCOUNTS = 12;
/** Subaccounts left empty in the store: their first rotation is a bootstrap. */
const EMPTY = [9, 10, 11];
/** Subaccounts that also hold a key of another application, which Rotator must never touch. */
const WITH_FOREIGN_KEY = [1, 4];
const DRAIN_SECONDS = 1;
const REFRESH_MS = 400;
const KEY_PREFIX = 'rotator';
const REDIS_PREFIX = 'rotator';
const UNDO_SHARE = 0.1;

interface ActiveFaults {
  twilio: boolean;
  denyWrites: boolean;
  storeDown: boolean;
  denyParent: Set<string>;
}

/**
 * One chaos run against one store: a private Redis (AOF, fsync always), the Twilio emulator, the
 * store, `workers` worker processes and the API as separate processes, consumers and a key
 * observer; a driver keeps rotations going through the API while the seeded fault schedule kills
 * processes and breaks dependencies. Then everything is restored, the rotations left unfinished
 * are retried as an operator would, and every invariant is checked.
 */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => undefined);
  const setupStart = Date.now();
  const durationMs = o.minutes * 60_000;
  const dir = await mkdtemp(join(tmpdir(), `rotator-chaos-${o.store}-`));
  const violations: string[] = [];
  const violation = (v: string): void => {
    violations.push(v);
    log(`VIOLATION ${v}`);
  };
  const cleanups: Array<() => Promise<void>> = [];
  let finishing = false;
  const cleanUp = async (): Promise<void> => {
    finishing = true;
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  };
  interrupted.add(cleanUp);
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();

  try {
    // ---- the world ----
    const redis = o.redis === 'sentinel' ? await sentinelChaosRedis(join(dir, 'redis')) : await singleChaosRedis(join(dir, 'redis'));
    cleanups.push(() => redis.stop());
    const emu = await startTwilioEmulator({ subaccounts: SUBACCOUNTS, seed: o.seed });
    cleanups.push(() => emu.close());
    emu.setFaults({ timeoutMs: 2_000 });
    const backend = await startStoreBackend(o.store, dir);
    cleanups.push(() => backend.close());
    // The AWS SDK in this process (observer, consumers) takes credentials from the environment.
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const) if (backend.env[name]) process.env[name] = backend.env[name];
    const operator = mintToken('chaos-operator', 'operator');
    const apiPort = await freePort();
    const env: Record<string, string> = {
      ...redis.env,
      REDIS_PREFIX,
      TWILIO_ACCOUNT_SID: emu.parent.accountSid,
      TWILIO_AUTH_TOKEN: emu.parent.authToken,
      TWILIO_BASE_URL: emu.url,
      TWILIO_TIMEOUT_MS: '1500',
      ...backend.env,
      DATA_DIR: join(dir, 'data'),
      DRAIN_SECONDS: String(DRAIN_SECONDS),
      JOB_LOCK_MS: '2000',
      STALLED_INTERVAL_MS: '500',
      API_TOKENS: operator.entry,
      HOST: '127.0.0.1',
      PORT: String(apiPort),
      // The driver polls its rotations: the per-client limit is not what this run tests.
      RATE_LIMIT_MAX: '1000000',
      KEY_NAME_PREFIX: KEY_PREFIX,
      LOG_LEVEL: 'info',
    };
    const cfg = loadConfig(env);
    const pathOf = (sid: string): string => secretPath(cfg.secretPathTemplate, sid);
    const openStore = async (): Promise<SecretStore> => {
      const s = await openSecretStore(cfg.store);
      cleanups.push(() => s.close());
      return s;
    };
    const store = await openStore();

    // ---- subaccounts: most with a current key, some empty, some with another app's key ----
    const accounts: string[] = emu.subaccounts.map((s) => s.sid);
    const initialAccounts = [...accounts];
    const preexisting = new Map<string, Array<{ sid: string; inStore: boolean }>>();
    for (const [i, sid] of accounts.entries()) {
      const list: Array<{ sid: string; inStore: boolean }> = [];
      if (!EMPTY.includes(i)) {
        const key = emu.seedKey(sid, 'initial application key');
        const seedId = crypto.randomUUID();
        await store.putPending(pathOf(sid), seedId, { accountSid: sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret) });
        await store.promotePending(pathOf(sid), seedId, key.sid);
        list.push({ sid: key.sid, inStore: true });
      }
      if (WITH_FOREIGN_KEY.includes(i)) list.push({ sid: emu.seedKey(sid, 'reporting service key').sid, inStore: false });
      preexisting.set(sid, list);
    }

    // ---- processes ----
    // A process started while Redis is away stops at once, exit 1, with one line saying why (README,
    // Operations: start-up); a supervisor starts it again, and so does the run. Any other exit on its
    // own is a violation.
    const redisOutages: Array<{ from: number; to?: number }> = [];
    let startRefusals = 0;
    const unexpected = (m: string, life: ProcessLife): void => {
      const duringOutage = redisOutages.some((out) => life.startedAt <= (out.to ?? Infinity) && life.exitedAt >= out.from);
      if (duringOutage && /rotator failed to start|redis/i.test(life.lastLine)) {
        startRefusals++;
        log(`${m} (a start-up refused while Redis was away: started again)`);
        return;
      }
      violation(m);
    };
    const api = new ManagedProcess('api', 'api', env, unexpected);
    const workers = Array.from({ length: o.workers }, (_, i) => new ManagedProcess(`worker ${i}`, 'worker', env, unexpected));
    const all = [api, ...workers];
    cleanups.push(async () => {
      await Promise.all(all.map((p) => p.stop()));
    });
    all.forEach((p) => p.start());
    const client = new ChaosApi(`http://127.0.0.1:${apiPort}`, operator.token);
    await client.request('GET', '/healthz', undefined, {}, 60_000);

    // The run's own view of Redis: waits through the restart instead of failing.
    const observerRedis = redis.connect();
    observerRedis.on('error', () => undefined);
    cleanups.push(async () => observerRedis.disconnect());
    const repo = new RotationRepository(observerRedis, REDIS_PREFIX);

    // ---- consumers and the key observer ----
    const consumerStore = await openStore();
    const consumers = Array.from({ length: 3 }, () => new SimulatedConsumer({ store: consumerStore, pathOf, accounts, refreshMs: REFRESH_MS, baseUrl: emu.url, pauseMs: 25 }));
    consumers.forEach((c) => c.start());
    const observer = new KeyObserver({ store: await openStore(), pathOf, accounts, emu, everyMs: 50 });
    observer.start();

    // ---- faults ----
    const active: ActiveFaults = { twilio: false, denyWrites: false, storeDown: false, denyParent: new Set() };
    const counts = { kills: 0, redisRestarts: 0, faults: 0, byKind: {} as Record<string, number> };
    const fileDir = o.store === 'file' ? backend.env.FILE_STORE_PATH! : undefined;
    const setImmutable = (on: boolean): void => {
      const r = spawnSync('chattr', [on ? '+i' : '-i', fileDir!], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`chattr ${on ? '+i' : '-i'} ${fileDir}: ${r.stderr || r.error?.message}`);
    };
    // `chattr +i` needs root and a file system with attributes (ext4, xfs…): without them the
    // file store's write denial is skipped, and the run says so.
    const canDenyWrites = !fileDir || (spawnSync('chattr', ['+i', fileDir]).status === 0 && spawnSync('chattr', ['-i', fileDir]).status === 0);
    if (!canDenyWrites) log(`the file store's write denial needs root and chattr on ${fileDir}: skipped in this run`);
    if (fileDir && canDenyWrites) cleanups.push(async () => setImmutable(false));
    const schedule = buildSchedule({ seed: o.seed, durationMs, workers: o.workers, accounts: initialAccounts.length, storeCanGoDown: o.store !== 'file' }).filter(
      (e) => e.kind !== 'store-deny-writes' || canDenyWrites,
    );
    const timers = new Set<NodeJS.Timeout>();
    cleanups.push(async () => timers.forEach((t) => clearTimeout(t)));
    /** Resolves after `ms`; never, once the run is torn down (its timer is cleared). */
    const sleep = (ms: number): Promise<void> =>
      new Promise((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, ms);
        timers.add(t);
      });
    const lanes: Promise<void>[] = [];
    const quiet = (sid: string): boolean => !active.denyWrites && !active.storeDown && !active.denyParent.has(sid);
    // The faults' clock starts here, once everything is up: a slow start-up must not push the
    // schedule past the driver's end (it used to, and faults late in the window never fired).
    const t0 = Date.now();
    const faults = new FaultTracker(schedule);
    // A last guard, not a pace: a fault still pending this long after the window is reported by
    // name below instead of holding the run forever.
    const faultsDeadline = t0 + durationMs + Math.max(120_000, durationMs);
    const driver = new Driver({ client, repo, rng: new Rng(o.seed ^ 0x5eed), target: o.rotations, until: t0 + durationMs, faultsSettled: () => faults.allLifted() || Date.now() > faultsDeadline, quiet, violation, log });
    // A lane that throws has stopped driving its subaccount: a violation, unless the run is being torn down.
    const runLane = (sid: string, index: number): Promise<void> =>
      driver.lane(sid, index).catch((err: Error) => {
        if (!finishing) violation(`the driver's lane for ${sid} failed: ${err.message}`);
      });
    const stamp = (): string => `+${((Date.now() - t0) / 1000).toFixed(1)}s`;
    /** Wait until the process is running (a kill that finds it down, restarting, waits for it). */
    const whenUp = async (p: ManagedProcess): Promise<void> => {
      while (!p.up && !finishing) await sleep(50);
    };
    /**
     * Apply one fault, hold it for its duration, lift it. Resolves once lifted: the next fault of
     * the same kind waits for that, so on a slow host faults queue up instead of being skipped.
     */
    const inject = async (f: TrackedFault): Promise<void> => {
      const e = f.event;
      const applied = (): void => {
        faults.applied(f);
        counts.faults++;
        counts.byKind[e.kind] = (counts.byKind[e.kind] ?? 0) + 1;
        log(`${stamp()} ${describeFault(e)}`);
      };
      switch (e.kind) {
        case 'kill-worker':
        case 'kill-api': {
          const p = e.kind === 'kill-api' ? api : workers[e.index]!;
          await whenUp(p);
          if (!(await p.kill(e.restartAfterMs))) throw new Error(`${p.name} was not running when it was to be killed`);
          counts.kills++;
          applied();
          await sleep(e.restartAfterMs);
          await whenUp(p);
          break;
        }
        case 'restart-redis':
          applied();
          counts.redisRestarts++;
          {
            const outage: { from: number; to?: number } = { from: Date.now() };
            redisOutages.push(outage);
            log(`${stamp()} ${await redis.fault(e.restartAfterMs, sleep)}`);
            outage.to = Date.now();
          }
          break;
        case 'twilio-faults':
          active.twilio = true;
          emu.setFaults({ failRate: { rate: e.rate, kinds: [429, 500, 'timeout', 'reset'] }, seed: o.seed + e.at });
          applied();
          await sleep(e.durationMs);
          emu.setFaults({ failRate: null });
          active.twilio = false;
          break;
        case 'store-deny-writes':
          active.denyWrites = true;
          if (fileDir) setImmutable(true);
          else await backend.denyWrites(true);
          applied();
          await sleep(e.durationMs);
          if (fileDir) setImmutable(false);
          else await backend.denyWrites(false);
          active.denyWrites = false;
          break;
        case 'store-down':
          active.storeDown = true;
          await backend.setDown(true);
          applied();
          await sleep(e.durationMs);
          // heal() would also lift a write denial in progress: put it back.
          await backend.setDown(false);
          if (active.denyWrites) await backend.denyWrites(true);
          active.storeDown = false;
          break;
        case 'deny-parent': {
          const sid = initialAccounts[e.account]!;
          active.denyParent.add(sid);
          emu.denyParent(sid, true);
          applied();
          await sleep(e.durationMs);
          emu.denyParent(sid, false);
          active.denyParent.delete(sid);
          break;
        }
        case 'add-subaccount': {
          const sub = emu.createSubaccount(`Chaos late ${accounts.length + 1}`);
          accounts.push(sub.sid);
          preexisting.set(sub.sid, []);
          applied();
          lanes.push(runLane(sub.sid, accounts.length));
          break;
        }
      }
      faults.lifted(f);
    };
    const lastOfKind = new Map<FaultEvent['kind'], Promise<void>>();
    for (const f of faults.all) {
      const previous = lastOfKind.get(f.event.kind) ?? Promise.resolve();
      const done = Promise.all([previous, sleep(f.event.at)]).then(() =>
        finishing
          ? undefined
          : inject(f).catch((err: Error) => {
              if (!finishing) violation(`the run itself failed to inject or lift "${describeFault(f.event)}": ${err.message}`);
            }),
      );
      lastOfKind.set(f.event.kind, done);
    }

    // ---- the driver ----
    for (const [i, sid] of accounts.entries()) lanes.push(runLane(sid, i));
    await driver.startedEnough();
    log(`${stamp()} ${driver.started} rotations started and every scheduled fault lifted: stopping`);
    // The short run in `npm test` relies on every fault it schedules: one that never fired would
    // leave its invariant untested while the run still passed.
    for (const f of faults.notLifted()) violation(`scheduled fault ${f.state === 'scheduled' ? 'never fired' : 'was never lifted'}: ${describeFault(f.event)} at +${(f.event.at / 1000).toFixed(1)}s`);

    // ---- restore everything (a no-op after a complete run; after a broken one, a clean slate) ----
    for (const t of timers) clearTimeout(t);
    timers.clear();
    emu.setFaults({ failRate: null });
    for (const sid of active.denyParent) emu.denyParent(sid, false);
    if (fileDir && canDenyWrites) setImmutable(false);
    else if (!fileDir) await backend.setDown(false);
    Object.assign(active, { twilio: false, denyWrites: false, storeDown: false, denyParent: new Set() });
    if (!(await pingable(redis.liveUrls()[0]!))) violation('redis-server did not come back after its restart');
    if (redis.rejoined) {
      await waitUntil(120_000, redis.rejoined);
      if (!(await redis.rejoined())) violation('the former primary did not become a replica of the promoted one');
    }
    all.forEach((p) => p.start());
    await Promise.all(lanes);

    // ---- the operator's recovery: everything settles, then unfinished failures are retried ----
    const listAll = async (): Promise<RotationRecord[]> => repo.getMany(await observerRedis.zrange(repo.keys.allRotations, "0", "-1"));
    const allTerminal = async (): Promise<boolean> => (await listAll()).every((r) => isTerminal(r.status));
    for (let round = 0; round < 3; round++) {
      await waitUntil(180_000, allTerminal);
      const unfinished = (await listAll()).filter(isUnfinished).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
      if (unfinished.length === 0) break;
      log(`operator retries ${unfinished.length} unfinished failed rotation(s)`);
      for (const r of unfinished) await driver.operatorRetry(r.id, r.accountSid, true);
    }
    // A retry whose answer was lost with the API is followed here.
    await waitUntil(180_000, allTerminal);
    // Consumers keep running for a drain after the last change, so a late deletion would show;
    // meanwhile the workers' audit relay reaches the last transition.
    await new Promise((r) => setTimeout(r, DRAIN_SECONDS * 1000 + REFRESH_MS));
    const lastEvent = ((await observerRedis.xrevrange(`${REDIS_PREFIX}:events`, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>)[0]?.[0];
    await waitUntil(60_000, async () => !lastEvent || (await observerRedis.get(`${REDIS_PREFIX}:audit:relay:cursor`)) === lastEvent);
    const stats: ConsumerStats[] = await Promise.all(consumers.map((c) => c.stop()));
    await observer.stop();

    // ---- invariants ----
    const records = await listAll();
    for (const v of checkAllTerminal(records)) violation(v);
    for (const v of checkNothingUnfinished(records)) violation(v);
    // Every failure must carry a classified cause: an "internal" one is an error nobody decided
    // was transient or permanent, so it failed (and undid) a rotation that a retry might have saved.
    for (const r of records) {
      for (const e of [r.error, r.lastError, ...r.history.filter((h) => /^internal\b/.test(h.detail ?? '')).map((h) => ({ code: 'internal', message: h.detail ?? '' }))]) {
        if (e?.code === 'internal') violation(`rotation ${r.id} of ${r.accountSid} met an unclassified error: ${e.message.slice(0, 300)}`);
      }
    }
    let orphanKeys = 0;
    for (const sid of accounts) {
      const mustHaveCurrent = (preexisting.get(sid) ?? []).some((p) => p.inStore) || records.some((r) => r.accountSid === sid && r.status === 'succeeded');
      const { problems, orphans } = checkAccount({ accountSid: sid, entry: await store.read(pathOf(sid)), keys: emu.listKeys(sid), preexisting: preexisting.get(sid) ?? [] }, KEY_PREFIX, mustHaveCurrent);
      orphanKeys += orphans;
      problems.forEach(violation);
    }
    observer.violations(DRAIN_SECONDS * 1000).forEach(violation);
    // A consumer's 401 breaks the contract only if Twilio refused a credential the consumer had
    // read from the store at most a drain earlier (Twilio's log time is when it refused it). One
    // used later than that — this process stalled between the consumer's freshness check and its
    // request reaching the emulator — is outside the contract and counted apart.
    const byKey = new Map<string, Array<{ accountSid: string; at: number; readAt: number; age: number }>>();
    let lateUse401s = 0;
    for (const f of stats.flatMap((s) => s.failures)) {
      const refused = (observer.refusedAt.get(f.keySid) ?? []).filter((t) => t <= f.at).at(-1) ?? f.at;
      const age = refused - f.readAt;
      if (age > DRAIN_SECONDS * 1000) {
        lateUse401s++;
        continue;
      }
      byKey.set(f.keySid, [...(byKey.get(f.keySid) ?? []), { ...f, age }]);
    }
    // The summary counts every 401 the consumers saw; only those within the contract are violations.
    const consumer401s = stats.reduce((n, s) => n + s.unauthorized, 0);
    for (const [keySid, fs] of byKey) {
      const first = fs.reduce((a, b) => (b.at < a.at ? b : a));
      const del = observer.deletedAt.get(keySid);
      violation(
        `consumers got ${fs.length} × 401 with ${keySid} on ${first.accountSid}, first at ${new Date(first.at).toISOString()} with a credential read ${first.age} ms before Twilio refused it` +
          (del ? `; Twilio deleted the key ${del.at - first.readAt} ms after that read` : '; the key was not deleted by Rotator'),
      );
    }
    // For every key behind a violation, the rotations that touched it: what to look at first.
    const suspects = new Set([...byKey.keys(), ...observer.violations(DRAIN_SECONDS * 1000).map((v) => /key (SK[0-9a-f]{32})/.exec(v)?.[1] ?? '')]);
    suspects.delete('');
    for (const keySid of suspects) {
      for (const r of records.filter((x) => x.oldKeySid === keySid || x.newKeySid === keySid)) {
        log(`  ${keySid} is the ${r.oldKeySid === keySid ? 'old' : 'new'} key of ${r.id} (${r.status}): ${r.history.map((h) => `${h.at.slice(11, 23)} ${h.step}/${h.status}${h.count ? `×${h.count}` : ''}${h.detail ? ` (${h.detail.slice(0, 80)})` : ''}`).join(' → ')}`);
      }
    }

    // The audit chain: intact (in-process and with the operator's command), and complete.
    const verdict = await verifyAuditChain(redisChainSource(observerRedis, REDIS_PREFIX));
    if (!verdict.ok) violation(`audit chain broken: ${verdict.message}`);
    const cli = await runAuditVerify(env);
    if (cli.code !== 0) violation(`npm run audit:verify exited ${cli.code}: ${cli.output.trim()}`);
    const audit: AuditEntry[] = [];
    for await (const e of new AuditLog(observerRedis, REDIS_PREFIX).entries()) audit.push(e);
    const coverage = checkAuditCoverage(records, audit);
    coverage.problems.forEach(violation);

    // No secret anywhere: Redis (live values and the AOF), every line any process printed.
    const secrets = [...emu.issuedSecrets(), ...backend.secrets, operator.token, emu.parent.authToken];
    const liveHits = findSecrets(secrets, await dumpRedis(redis.liveUrls()));
    if (liveHits.length) violation(`${liveHits.length} secret(s) found in Redis values`);
    const aofHits = findSecrets(secrets, [redis.persistedText()]);
    if (aofHits.length) violation(`${aofHits.length} secret(s) found in Redis's append-only file`);
    // CHAOS_LOG_DIR: keep every process's output (what to read after a violation).
    if (process.env.CHAOS_LOG_DIR) for (const p of all) await writeFile(join(process.env.CHAOS_LOG_DIR, `${o.store}-${o.seed}-${p.name.replace(/\s+/g, '-')}.log`), p.text());
    for (const p of all) {
      const hits = findSecrets(secrets, [p.text()]);
      if (hits.length) violation(`${hits.length} secret(s) found in the output of ${p.name}`);
    }

    const byStatus = (s: string): number => records.filter((r) => r.status === s).length;
    const rotations = { total: records.length, succeeded: byStatus('succeeded'), failed: byStatus('failed'), cancelled: byStatus('cancelled'), rolled_back: byStatus('rolled_back') };
    const elapsed = Date.now() - setupStart;
    const summary =
      `chaos: store=${o.store}${o.redis === 'sentinel' ? ' redis=sentinel' : ''} seed=${o.seed} rotations=${rotations.total} (${rotations.succeeded}/${rotations.failed}/${rotations.cancelled}/${rotations.rolled_back}) ` +
      `kills=${counts.kills} redis_restarts=${counts.redisRestarts} faults=${counts.faults} consumer_401s=${consumer401s} orphan_keys=${orphanKeys} violations=${violations.length}`;
    return {
      store: o.store,
      seed: o.seed,
      rotations,
      kills: counts.kills,
      redisRestarts: counts.redisRestarts,
      faults: counts.faults,
      faultsScheduled: schedule.length,
      consumer401s,
      orphanKeys,
      violations,
      durationMs: elapsed,
      summary,
      details: {
        faultsByKind: counts.byKind,
        ...redis.details(),
        ...(canDenyWrites ? {} : { skipped: 'store-deny-writes (no chattr)' }),
        bootstraps: records.filter((r) => r.oldKeySid === null && r.status === 'succeeded').length,
        failedBy: tally(records.filter((r) => r.status === 'failed').map((r) => `${r.error?.code ?? r.lastError?.code ?? '?'}${r.history.some((h) => h.detail?.startsWith('undo stopped')) ? ' (undo stopped once)' : ''}`)),
        undoRequests: driver.undoRequests,
        operatorRetries: driver.operatorRetries,
        idempotencyWaits: driver.idempotencyWaits,
        subaccountCheckWaits: driver.subaccountCheckWaits,
        apiRetries: client.retries,
        consumerRequests: stats.reduce((n, s) => n + s.requests, 0),
        consumerStoreErrors: stats.reduce((n, s) => n + s.storeErrors, 0),
        consumer401sOutsideContract: lateUse401s,
        keysDeleted: observer.deletedAt.size,
        storeSamples: observer.samples,
        auditEntries: audit.length,
        auditDuplicates: coverage.duplicates,
        processLives: Object.fromEntries(all.map((p) => [p.name, p.lives])),
        // Deliveries that found their rotation taken over (a lease run out, a job lock lost) and stopped.
        startRefusals,
        lostDeliveries: all.reduce((n, p) => n + (p.text().match(/lost the job to another worker/g)?.length ?? 0), 0),
        maxEventLoopLagMs: Math.round(lag.max / 1e6),
        durationS: Math.round(elapsed / 1000),
      },
    };
  } finally {
    lag.disable();
    interrupted.delete(cleanUp);
    await cleanUp();
  }
}

const interrupted = new Set<() => Promise<void>>();

interface TrackedFault {
  event: FaultEvent;
  state: 'scheduled' | 'applied' | 'lifted';
}

/** Which of the scheduled faults fired and which were lifted again. */
class FaultTracker {
  readonly all: TrackedFault[];
  #lifted = 0;
  constructor(schedule: FaultEvent[]) {
    this.all = schedule.map((event) => ({ event, state: 'scheduled' }));
  }
  applied(f: TrackedFault): void {
    f.state = 'applied';
  }
  lifted(f: TrackedFault): void {
    if (f.state !== 'lifted') this.#lifted++;
    f.state = 'lifted';
  }
  allLifted(): boolean {
    return this.#lifted === this.all.length;
  }
  notLifted(): TrackedFault[] {
    return this.all.filter((f) => f.state !== 'lifted');
  }
}

/** Stop every run in progress and undo what it set up (processes, Redis, `chattr +i`, files): for Ctrl-C. */
export async function abortChaos(): Promise<void> {
  await Promise.all([...interrupted].map((c) => c()));
}

interface DriverDeps {
  client: ChaosApi;
  repo: RotationRepository;
  rng: Rng;
  target: number;
  /** The driver stops once it started `target` rotations, `until` has passed and every fault was lifted. */
  until: number;
  faultsSettled(): boolean;
  /** No fault that a retry would run into is active for this subaccount. */
  quiet(accountSid: string): boolean;
  violation(v: string): void;
  log(line: string): void;
}

/**
 * Keeps rotations going through the API, one lane per subaccount: start one, follow it to its end
 * (cancelling or rolling back about one in ten on the way), start the next. A rotation the API
 * answers 409 for is followed instead, and if it failed part-way it is retried, as an operator
 * would, once the fault that stopped it is gone.
 */
class Driver {
  started = 0;
  undoRequests = { cancel: 0, rollback: 0, refused: 0 };
  operatorRetries = 0;
  idempotencyWaits = 0;
  subaccountCheckWaits = 0;
  #done = false;
  #enough: Promise<void>;
  #resolveEnough!: () => void;

  constructor(private readonly d: DriverDeps) {
    this.#enough = new Promise((r) => (this.#resolveEnough = r));
  }

  startedEnough(): Promise<void> {
    return this.#enough;
  }

  #keepGoing(): boolean {
    if (!this.#done && this.started >= this.d.target && Date.now() >= this.d.until && this.d.faultsSettled()) {
      this.#done = true;
      this.#resolveEnough();
    }
    return !this.#done;
  }

  async lane(sid: string, index: number): Promise<void> {
    const rng = this.d.rng.fork(index);
    while (this.#keepGoing()) {
      const started = await this.#start(sid);
      if (!started) continue;
      if (started.fresh) {
        this.started++;
        this.#keepGoing();
        const plan = rng.chance(UNDO_SHARE) ? { action: rng.chance(0.5) ? ('cancel' as const) : ('rollback' as const), afterMs: rng.between(50, 2_500) } : undefined;
        await this.#follow(started.id, plan);
      } else {
        const rec = await this.d.repo.get(started.id);
        if (rec && isUnfinished(rec)) await this.operatorRetry(rec.id, sid, false);
        else await this.#follow(started.id);
      }
    }
  }

  async #start(sid: string): Promise<{ id: string; fresh: boolean } | undefined> {
    // The same Idempotency-Key across retries: an answer lost with a killed API is replayed. A key
    // still "in progress" (its request died with the API, or could not release it while Redis was
    // away; it expires in a minute) is retried shortly, then given up for a fresh one — safe, as a
    // second rotation of the account would only get 409 with the first one's id.
    let key = crypto.randomUUID();
    let res;
    for (let attempt = 0; ; attempt++) {
      res = await this.d.client.request<{ id?: string; error?: { code: string; message: string } }>('POST', '/v1/rotations', { accountSid: sid, reason: 'chaos' }, { 'idempotency-key': key });
      // The API could not ask Twilio whether a subaccount it has not synced yet (one added
      // mid-run) is the parent's, because Twilio is failing: a transient refusal, as documented.
      if (res.status === 503 && res.body.error?.code === 'subaccount_check_unavailable') {
        this.subaccountCheckWaits++;
        await new Promise((r) => setTimeout(r, 500));
        key = crypto.randomUUID();
        continue;
      }
      if (res.status !== 409 || res.body.error?.code !== 'idempotency_in_progress') break;
      this.idempotencyWaits++;
      await new Promise((r) => setTimeout(r, 1_000));
      if (attempt >= 2) key = crypto.randomUUID();
    }
    if (res.status === 202 && res.body.id) return { id: res.body.id, fresh: true };
    // Held by a rotation in flight, or by one that failed part-way (the lane retries that one).
    const held = ['rotation_in_flight', 'subaccount_held_by_failed_rotation'];
    if (res.status === 409 && held.includes(res.body.error?.code ?? '') && res.body.id) return { id: res.body.id, fresh: false };
    this.d.violation(`POST /v1/rotations for ${sid} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
    await new Promise((r) => setTimeout(r, 1_000));
    return undefined;
  }

  /** Poll until the rotation is finished; on the way, request the planned cancel or rollback. */
  async #follow(id: string, plan?: { action: 'cancel' | 'rollback'; afterMs: number }): Promise<RotationRecord | undefined> {
    const since = Date.now();
    let asked = false;
    for (;;) {
      if (plan && !asked && Date.now() - since >= plan.afterMs) {
        asked = true;
        const res = await this.d.client.request('POST', `/v1/rotations/${id}/${plan.action}`);
        if (res.status === 200) this.undoRequests[plan.action]++;
        else if (res.status === 409) this.undoRequests.refused++;
        else this.d.violation(`POST /v1/rotations/${id}/${plan.action} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
      }
      const rec = await this.d.repo.get(id);
      if (!rec) {
        this.d.violation(`rotation ${id} has no record`);
        return undefined;
      }
      if (isTerminal(rec.status)) return rec;
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  /** Retry a rotation that failed part-way once nothing stands in its way, and follow it. */
  async operatorRetry(id: string, sid: string, force: boolean): Promise<void> {
    while (!force && !this.d.quiet(sid)) await new Promise((r) => setTimeout(r, 250));
    const res = await this.d.client.request<{ error?: { code: string; message: string } }>('POST', `/v1/rotations/${id}/retry`);
    if (res.status === 200) {
      this.operatorRetries++;
      await this.#follow(id);
    } else if (res.status !== 409) {
      this.d.violation(`POST /v1/rotations/${id}/retry answered ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
    } else {
      // Retried already (by another lane or the end sweep), or another rotation holds the account.
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function tally(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[i] = (out[i] ?? 0) + 1;
  return out;
}

async function pingable(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** Wait for `fn`; on timeout just return: the invariant checks then say what is left. */
async function waitUntil(timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
}

/** `npm run audit:verify` as an operator runs it, against the run's Redis. */
function runAuditVerify(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/audit-verify.ts'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('REDIS_'))) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => resolve({ code, output }));
  });
}
