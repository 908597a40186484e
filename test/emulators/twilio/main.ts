/**
 * `npm run emulator:twilio -- --port 4010 --subaccounts 3 [--latency ms] [--concurrency C]
 *  [--fail-rate 0.1] [--fail-kinds 429,500,reset] [--seed N] [--no-parent-main-key-on-subaccounts]`
 *
 * Prints one JSON line with the URL and seeded credentials, then serves until SIGTERM/SIGINT.
 */
import { parseArgs } from 'node:util';
import type { FaultKind } from './faults.ts';
import { startTwilioEmulator } from './server.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    subaccounts: { type: 'string', default: '3' },
    latency: { type: 'string', default: '0' },
    concurrency: { type: 'string' },
    'fail-rate': { type: 'string' },
    'fail-kinds': { type: 'string', default: '429,500,reset' },
    seed: { type: 'string' },
    'no-parent-main-key-on-subaccounts': { type: 'boolean', default: false },
  },
  strict: true,
});

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name} must be a non-negative number, got ${v}`);
    process.exit(2);
  }
  return n;
}

function kinds(v: string): FaultKind[] {
  return v.split(',').map((k) => {
    const t = k.trim();
    if (t === 'reset' || t === 'timeout') return t;
    const n = Number(t);
    if (n === 429 || n === 500 || n === 503) return n;
    console.error(`--fail-kinds: unknown kind ${t} (use 429, 500, 503, reset, timeout)`);
    process.exit(2);
  });
}

const failRate = int('fail-rate', values['fail-rate']);
const seed = int('seed', values.seed);
const concurrency = int('concurrency', values.concurrency);
const emulator = await startTwilioEmulator({
  port: int('port', values.port) ?? 0,
  host: values.host,
  subaccounts: int('subaccounts', values.subaccounts) ?? 3,
  latencyMs: int('latency', values.latency) ?? 0,
  ...(concurrency !== undefined ? { concurrency } : {}),
  ...(seed !== undefined ? { seed } : {}),
  ...(failRate !== undefined ? { failRate: { rate: failRate, kinds: kinds(values['fail-kinds']) } } : {}),
  parentMainKeyOnSubaccounts: !values['no-parent-main-key-on-subaccounts'],
});

console.log(
  JSON.stringify({
    url: emulator.url,
    accountSid: emulator.parent.accountSid,
    authToken: emulator.parent.authToken,
    mainKeySid: emulator.parent.mainKey.sid,
    mainKeySecret: emulator.parent.mainKey.secret,
    subaccounts: emulator.subaccounts.map((s) => ({ sid: s.sid, friendlyName: s.friendlyName })),
  }),
);

const stop = (): void => {
  emulator.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
