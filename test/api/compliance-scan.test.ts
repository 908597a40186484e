import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/stack.ts';
import { startRotation, waitFinished } from '../helpers/engine.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

/**
 * The compliance scan as workers run it: on request (POST /v1/compliance/scan reaches a worker
 * through Redis), one at a time across processes, through the Twilio cap, and refreshing each
 * credential's key date from Twilio's own list.
 */
describe('the compliance scan run by workers', () => {
  let h: ApiHarness;

  beforeAll(async () => {
    // On request only: the scan runs when the test asks, never on a timer.
    h = await startApiHarness({ worker: true, logLevel: 'warn', env: { COMPLIANCE_SCAN_SECONDS: '0', TWILIO_MAX_CONCURRENCY: '2' } });
    await h.rt.accounts.upsertMany(h.stack.emu.subaccounts.map((s) => ({ accountSid: s.sid, friendlyName: s.friendlyName, status: 'active', ownerAccountSid: h.stack.emu.parent.accountSid })));
  });
  afterAll(async () => h?.close());

  it('POST /v1/compliance/scan is picked up by a worker; a finished rotation gets its key date from Twilio', async () => {
    const sid = h.stack.emu.subaccounts[0]!.sid;
    const rec = await waitFinished(h.rt, (await startRotation(h.rt, sid)).id);
    expect(rec.status).toBe('succeeded');
    const cred = await waitFor('the credential to record the rotation', async () => {
      const c = await h.rt.credentials.get({ accountSid: sid, name: 'default' });
      return c?.currentKeySid === rec.newKeySid ? c : undefined;
    });
    const atTwilio = h.stack.emu.listKeys(sid).find((k) => k.sid === rec.newKeySid)!;
    // Until a scan, the record has the time create-secondary finished (ms); Twilio's date_created is in whole seconds.
    expect(cred.keyCreatedAtMs).not.toBeNull();

    const before = Date.now();
    const res = await h.app.inject({ method: 'POST', url: '/v1/compliance/scan', headers: bearer(h.tokens.admin) });
    expect(res.statusCode).toBe(202);
    const scan = await waitFor('a worker to run the requested scan', async () => {
      const last = await h.rt.compliance.facts.lastScan();
      return last && Date.parse(last.startedAt) >= before - 1000 ? last : undefined;
    });
    expect(scan).toMatchObject({ subaccounts: 3, listed: 3, notListed: 0, credentials: 1 });
    const after = await h.rt.credentials.get({ accountSid: sid, name: 'default' });
    expect(after?.keyCreatedAtMs).toBe(Math.floor(atTwilio.dateCreated.getTime() / 1000) * 1000);
    const page = (await h.app.inject({ method: 'GET', url: '/v1/compliance', headers: bearer(h.tokens.viewer) })).json();
    expect(page.items).toEqual([expect.objectContaining({ accountSid: sid, credential: 'default', keySid: rec.newKeySid, keyAgeDays: 0, lastRotationOutcome: 'succeeded', withinPolicy: true })]);
    expect(page.scan.lastFinishedAt).toBe(scan.finishedAt);
  });

  it('one scan at a time across processes: a second started meanwhile is refused as busy', async () => {
    const scanner = h.rt.compliance.scanner!;
    // Held in Twilio: both scans start while the emulator answers slowly.
    h.stack.emu.setFaults({ latencyMs: 300 });
    h.stack.emu.resetStats();
    try {
      const [a, b] = await Promise.all([scanner.scanOnce('test'), scanner.scanOnce('test')]);
      expect([a, b].filter((x) => x === 'busy')).toHaveLength(1);
      expect(h.stack.emu.stats().inFlightPeak).toBeLessThanOrEqual(2);
    } finally {
      h.stack.emu.setFaults({ latencyMs: 0 });
    }
    expect(await h.rt.compliance.facts.running()).toBeNull();
  });
});
