import { appendFileSync } from 'node:fs';
// The package's own export, as an application imports it (package.json "exports": "./client").
import { createTwilioClient } from 'rotator/client';

/**
 * An application built on Rotator's client library, run as a real process by the consumer-gate
 * tests: it sends Messages continuously with the client and appends to STATS_FILE one JSON line
 * each time the key it uses changes (`{"event":"key", keySid, at}`), and its totals when told to
 * stop (SIGTERM): requests that succeeded, failures that reached this code (the contract: none),
 * and requests the client sent again after a 401.
 *
 * Environment: the store's settings by Rotator's names, TWILIO_BASE_URL, ACCOUNT_SID, CONSUMER,
 * REFRESH_SECONDS, ROTATOR_URL and ROTATOR_TOKEN (heartbeats), STATS_FILE.
 */
const env = process.env;
const statsFile = env.STATS_FILE!;
const record = (line: object): void => appendFileSync(statsFile, `${JSON.stringify(line)}\n`);

const client = await createTwilioClient({
  accountSid: env.ACCOUNT_SID!,
  refreshSeconds: Number(env.REFRESH_SECONDS ?? 300),
  heartbeat: { url: env.ROTATOR_URL!, token: env.ROTATOR_TOKEN!, consumer: env.CONSUMER!, intervalSeconds: Number(env.HEARTBEAT_SECONDS ?? 30), onError: (err) => record({ event: 'heartbeat-error', message: err.message }) },
});

let running = true;
let ok = 0;
const failures: string[] = [];
let lastKey: string | undefined;
process.on('SIGTERM', () => {
  running = false;
});

console.log(JSON.stringify({ msg: `rotator started: consumer ${env.CONSUMER}` }));
while (running) {
  try {
    await client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'ping' });
    ok++;
  } catch (err) {
    failures.push(`${(err as { status?: number }).status ?? ''} ${(err as Error).message}`.slice(0, 200));
  }
  const key = client.rotator.keySid();
  if (key !== lastKey) {
    lastKey = key;
    record({ event: 'key', keySid: key, at: Date.now() });
  }
  await new Promise((r) => setTimeout(r, 20));
}
record({ event: 'stats', ok, failures, retriedAfter401: client.rotator.retriedAfter401 });
await client.rotator.close();
process.exit(0);
