import twilio from 'twilio';
import { secretPath } from '../providers/secret-store.ts';
import { Secret } from '../src/domain/secret.ts';
import { prepareFleet } from './fleet.ts';
import { round } from './lib.ts';

/**
 * What a user writes by hand: for each subaccount in turn, create a key, write it to the store,
 * delete the old key. No drain, no verification, no crash safety — just the floor of effort.
 */
export async function runBaseline(opts: { n: number; latencyMs: number; twilioConcurrency: number; log?: (m: string) => void }): Promise<{ n: number; wallSeconds: number; twilioCalls: number; cpuMsPerRotation: number }> {
  opts.log?.(`baseline N=${opts.n}: seeding`);
  const fleet = await prepareFleet(opts.n, opts.latencyMs, opts.twilioConcurrency);
  try {
    const inner = new twilio.RequestClient({ keepAlive: true });
    const httpClient = { request: (o: { uri: string }) => inner.request({ ...(o as object as { method: 'get' }), uri: o.uri.replace(/^https:\/\/api\.twilio\.com/, fleet.emu.url) }) };
    const client = twilio(fleet.emu.accountSid, fleet.emu.authToken, { httpClient: httpClient as never });
    await fetch(`${fleet.emu.url}/__emulator/stats/reset`, { method: 'POST' });
    opts.log?.(`baseline N=${opts.n}: rotating`);
    const t0 = performance.now();
    // This process's CPU while it rotates: the Twilio SDK and the store (the emulator and Redis are
    // other processes). Rotator's worker CPU per rotation over this is a ratio both sides of which
    // move with the host's speed, so it holds where absolute figures do not.
    const cpu0 = process.cpuUsage();
    for (const sub of fleet.emu.subaccounts) {
      const path = secretPath('twilio/{accountSid}', sub.sid);
      const old = await fleet.store.readCurrent(path);
      const key = await client.api.v2010.accounts(sub.sid).newKeys.create({ friendlyName: 'rotated by hand' });
      const id = crypto.randomUUID();
      await fleet.store.putPending(path, id, { accountSid: sub.sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret!) });
      await fleet.store.promotePending(path, id, key.sid);
      if (old) await client.api.v2010.accounts(sub.sid).keys(old.apiKeySid).remove();
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const stats = (await (await fetch(`${fleet.emu.url}/__emulator/stats`)).json()) as { requests: number };
    return { n: opts.n, wallSeconds: round(wallSeconds, 2), twilioCalls: stats.requests, cpuMsPerRotation: round((cpu.user + cpu.system) / 1000 / opts.n, 3) };
  } finally {
    await fleet.close();
  }
}
