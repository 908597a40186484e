import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type ConfigError } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { addressBucket } from '../../src/api/plugins/rate-limit.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

const base = { REDIS_URL: 'redis://127.0.0.1:1', DATA_DIR: '/tmp/rotator-config-test' };
const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig({ ...base, ...env }, { requireTwilio: false });
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};
const trustProxy = (value: string) => loadConfig({ ...base, TRUST_PROXY: value }, { requireTwilio: false }).trustProxy;

/**
 * The client address decides the per-address rate limit and the audit trail's `ip`. It may come
 * from X-Forwarded-For only as far as a proxy Rotator trusts wrote it.
 */
describe('client address (TRUST_PROXY) and the per-address limit', () => {
  it('refuses TRUST_PROXY=true with what to set instead; reads addresses, CIDRs and hop counts; refuses the rest', () => {
    expect(problems({ TRUST_PROXY: 'true' })).toEqual([expect.stringMatching(/^TRUST_PROXY=true would let any client choose its own address.*TRUST_PROXY=10\.0\.0\.0\/8,127\.0\.0\.1.*TRUST_PROXY=1/)]);
    expect(trustProxy('false')).toBe(false);
    expect(loadConfig(base, { requireTwilio: false }).trustProxy).toBe(false);
    expect(trustProxy('1')).toBe(1);
    expect(trustProxy('10.0.0.0/8, 192.0.2.7,2001:db8::/32, ::1, loopback')).toEqual(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::1', 'loopback']);
    for (const bad of ['0', '11', 'yes', 'proxy.example.com', '10.0.0.300', '10.0.0.0/33', '2001:db8::/129', '10.0.0.1/8/9', '*']) {
      expect(problems({ TRUST_PROXY: bad }), bad).toEqual([expect.stringMatching(/^TRUST_PROXY /)]);
    }
  });

  it('keys IPv6 addresses by their /64 and IPv4-mapped ones by the IPv4 address', () => {
    expect(addressBucket('192.0.2.1')).toBe('192.0.2.1');
    expect(addressBucket('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressBucket('2001:db8:1:2::a')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressBucket('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressBucket('::1')).toBe('0:0:0:0::/64');
    expect(addressBucket('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
  });

  describe('in the app', () => {
    let h: ApiHarness;
    let hop: Runtime | undefined;
    const PROXY = '10.0.0.1';
    let n = 0;
    beforeAll(async () => {
      h = await startApiHarness({ env: { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW: '60s', TRUST_PROXY: `${PROXY},10.0.1.0/24` }, logLevel: 'warn' });
    });
    afterAll(async () => {
      await hop?.close();
      await h?.close();
    });

    /** An audited request by a principal of its own (so only the per-address limit can apply). */
    const post = async (remoteAddress: string, forwardedFor?: string) => {
      const token = await h.jwt('operator', { sub: `caller-${++n}` });
      return h.app.inject({
        method: 'POST',
        url: `/v1/rotations/${crypto.randomUUID()}/cancel`,
        remoteAddress,
        headers: { ...bearer(token), ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
      });
    };
    const auditedIps = async (fromCaller: number) => {
      const ips: string[] = [];
      for await (const e of h.rt.audit.entries()) if (e.actor.startsWith('oidc:caller-') && Number(e.actor.slice(12)) > fromCaller) ips.push(e.ip!);
      return ips;
    };

    it('a client that is not a trusted proxy cannot choose its address with X-Forwarded-For: limited and audited by its own', async () => {
      const from = n;
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await post('198.51.100.7', `203.0.113.${i + 1}`)).statusCode);
      expect(statuses).toEqual([404, 404, 404, 404, 404, 429]);
      expect(await auditedIps(from)).toEqual(Array(5).fill('198.51.100.7'));
    });

    it('TRUST_PROXY=true never reaches the app, where a client forging X-Forwarded-For would escape the limit and forge the audit ip', async () => {
      const token = mintToken('forger', 'operator');
      let cfg;
      try {
        cfg = loadConfig({ ...h.stack.env, API_TOKENS: token.entry, TRUST_PROXY: 'true', RATE_LIMIT_MAX: '5', ACCOUNT_SYNC_SECONDS: '0' });
      } catch (err) {
        expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^TRUST_PROXY=true would let any client choose/)]);
        return;
      }
      // Were it accepted, the app would still have to limit and audit the client by its socket.
      const rt = await startRuntime(cfg, { api: true, worker: false, log: createLogger('warn', h.stack.logs) });
      try {
        const statuses: number[] = [];
        for (let i = 0; i < 6; i++) {
          const res = await rt.app!.inject({ method: 'POST', url: `/v1/rotations/${crypto.randomUUID()}/cancel`, remoteAddress: '198.51.100.8', headers: { ...bearer(token.token), 'x-forwarded-for': `203.0.113.${i + 1}` } });
          statuses.push(res.statusCode);
        }
        const ips: string[] = [];
        for await (const e of rt.audit.entries()) if (e.actor === 'forger') ips.push(e.ip!);
        expect({ statuses, ips }).toEqual({ statuses: [404, 404, 404, 404, 404, 429], ips: Array(5).fill('198.51.100.8') });
      } finally {
        await rt.close();
      }
    });

    it('through a trusted proxy, the address the proxy saw counts, not what the client wrote before it', async () => {
      const from = n;
      // The client forged the first entry; the proxy appended the address it saw.
      for (let i = 0; i < 5; i++) expect((await post(PROXY, `198.51.100.${i + 50}, 203.0.113.77`)).statusCode).toBe(404);
      const limited = await post('10.0.1.9', '10.9.9.9, 203.0.113.77');
      expect(limited.statusCode).toBe(429);
      expect(limited.json().error.message).toMatch(/from this address/);
      expect(await auditedIps(from)).toEqual(Array(5).fill('203.0.113.77'));
    });

    it('limits IPv6 clients per /64, not per address', async () => {
      const statuses: number[] = [];
      for (let i = 1; i <= 6; i++) statuses.push((await post(`2001:db8:aa:bb::${i.toString(16)}:${i}`)).statusCode);
      expect(statuses).toEqual([404, 404, 404, 404, 404, 429]);
      expect((await post('2001:db8:aa:bc::1')).statusCode).toBe(404);
    });

    it('a hop count trusts that many proxies in front of the port', async () => {
      const admin = mintToken('hop-admin', 'operator');
      const cfg = loadConfig({ ...h.stack.env, API_TOKENS: admin.entry, TRUST_PROXY: '1', RATE_LIMIT_MAX: '1000', ACCOUNT_SYNC_SECONDS: '0' });
      hop = await startRuntime(cfg, { api: true, worker: false, log: createLogger('warn', h.stack.logs) });
      const res = await hop.app!.inject({ method: 'POST', url: `/v1/rotations/${crypto.randomUUID()}/cancel`, remoteAddress: '192.0.2.10', headers: { ...bearer(admin.token), 'x-forwarded-for': '198.51.100.1, 203.0.113.99' } });
      expect(res.statusCode).toBe(404);
      const ips: string[] = [];
      for await (const e of hop.audit.entries()) if (e.actor === 'hop-admin') ips.push(e.ip!);
      expect(ips).toEqual(['203.0.113.99']);
    });
  });
});
