import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { startRuntime } from './runtime.ts';
import { mintToken } from './api/tokens.ts';
import { secretPath } from '../providers/secret-store.ts';
import { Secret } from './domain/secret.ts';
import { isTerminal } from './domain/rotation.ts';
import { startTwilioEmulator } from '../test/emulators/twilio/server.ts';

/**
 * `npm run demo`: the whole service on embedded defaults — a private redis-server, the Twilio
 * emulator with 3 subaccounts whose current keys are already in the encrypted file store, the API
 * and a worker with a short drain — then one rotation of each subaccount, printed as it happens.
 * `--once` exits when those rotations finish (used by the test of this command).
 */
async function demo(): Promise<void> {
  const once = process.argv.includes('--once');
  const dataDir = resolve(process.env.DEMO_DATA_DIR ?? '.data/demo');
  // The emulator forgets everything on exit, so the demo's store and Redis start fresh too.
  await rm(dataDir, { recursive: true, force: true });
  const emu = await startTwilioEmulator({ subaccounts: 3, latencyMs: 20 });
  const admin = mintToken('demo', 'admin');
  const viewer = mintToken('demo-viewer', 'viewer');
  const cfg = loadConfig({
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: process.env.PORT ?? '8080',
    TWILIO_ACCOUNT_SID: emu.parent.accountSid,
    TWILIO_AUTH_TOKEN: emu.parent.authToken,
    TWILIO_BASE_URL: emu.url,
    DRAIN_SECONDS: process.env.DRAIN_SECONDS ?? '5',
    API_TOKENS: `${admin.entry},${viewer.entry}`,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  });
  const rt = await startRuntime(cfg, { api: true, worker: true, log: createLogger(cfg.logLevel) });

  for (const sub of emu.subaccounts) {
    const key = emu.seedKey(sub.sid, 'app key (pre-Rotator)');
    const path = secretPath(cfg.secretPathTemplate, sub.sid);
    const seedId = crypto.randomUUID();
    await rt.store.putPending(path, seedId, { accountSid: sub.sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret) });
    await rt.store.promotePending(path, seedId, key.sid);
  }

  let url: string;
  try {
    url = await rt.listen();
  } catch {
    // 8080 taken: any free port.
    url = await rt.app!.listen({ host: '127.0.0.1', port: 0 });
  }
  const sub = emu.subaccounts[0]!.sid;
  console.log(`
Rotator demo
  Dashboard:      ${url}/   (open it, paste the demo token below into "API token" and sign in;
                  the viewer token shows the read-only view)
  API:            ${url}   (OpenAPI UI: ${url}/docs)
  Twilio emulator ${emu.url}   parent ${emu.parent.accountSid}, subaccounts ${emu.subaccounts.map((s) => s.sid).join(', ')}
  Redis:          ${rt.redisLocation} (embedded; password in ${dataDir}/redis/redis.password)
  Secret store:   encrypted files in ${cfg.store.kind === 'file' ? cfg.store.dir : cfg.store.kind}
  Drain:          ${cfg.drainSeconds}s
  Demo token (admin): ${admin.token}
  Viewer token:       ${viewer.token}

Try:
  curl -s -X POST ${url}/v1/rotations -H 'Authorization: Bearer ${admin.token}' -H 'content-type: application/json' -d '{"accountSid":"${sub}","reason":"demo"}'
  curl -s ${url}/v1/rotations -H 'Authorization: Bearer ${admin.token}'
`);

  const started: string[] = [];
  for (const s of emu.subaccounts) {
    const r = await rt.service.start({ accountSid: s.sid, reason: 'demo: first rotation', trigger: 'demo', requestedBy: 'demo' });
    if (r.started) started.push(r.record.id);
  }
  console.log(`Started ${started.length} rotations; following their events (Ctrl-C to stop):`);
  let cursor = '0';
  const pending = new Set(started);
  // One read at a time: a read slower than the interval would otherwise run beside the next one
  // from the same cursor, and print its events twice.
  let reading = false;
  const follow = setInterval(() => {
    if (reading) return;
    reading = true;
    void (async () => {
      for (const { id, event } of await rt.repo.events(cursor, 100)) {
        cursor = id;
        if (event.type !== 'rotation') continue;
        const t = event.transition;
        if (t) console.log(`  ${event.at.slice(11, 23)}  ${event.accountSid}  ${t.step.padEnd(16)} ${t.status.padEnd(9)} ${t.detail ?? ''}`);
        if (isTerminal(event.status)) pending.delete(event.id);
      }
      if (once && pending.size === 0) {
        clearInterval(follow);
        const results = await rt.repo.getMany(started);
        const ok = results.every((r) => r.status === 'succeeded');
        console.log(ok ? 'All demo rotations succeeded; each subaccount has exactly one key, the store\'s current one.' : 'Some demo rotations did not succeed.');
        await rt.close();
        await emu.close();
        process.exit(ok ? 0 : 1);
      }
    })()
      .catch((err: Error) => console.error(err.message))
      .finally(() => {
        reading = false;
      });
  }, 200);

  const stop = (): void => {
    clearInterval(follow);
    void rt.close().then(() => emu.close()).then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

demo().catch((err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
