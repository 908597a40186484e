import { describe, expect, it } from 'vitest';
import { loadConfig, type ConfigError } from '../../src/config.ts';

const base = { REDIS_URL: 'redis://127.0.0.1:1', DATA_DIR: '/tmp/rotator-config-test' };
const load = (env: Record<string, string>) => loadConfig({ ...base, ...env }, { requireTwilio: false });
const problems = (env: Record<string, string>): string[] => {
  try {
    load(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('API settings in src/config.ts', () => {
  it('has safe defaults: no OIDC, no CORS, 300 requests a minute, 24 h idempotency, quarterly policy, hourly sync', () => {
    const cfg = load({});
    expect(cfg.api).toEqual({ oidc: undefined, rateLimitMax: 300, rateLimitWindowMs: 60_000, corsOrigins: [], idempotencyTtlSeconds: 86_400, sseMaxClients: 200, sseHeartbeatMs: 15_000 });
    expect(cfg.rotationPolicy).toBe('quarterly');
    expect(cfg.accountSyncIntervalMs).toBe(3_600_000);
  });

  it('reads OIDC with its role map, and refuses it without issuer and audience', () => {
    const cfg = load({ OIDC_JWKS_URL: 'https://idp.example/jwks', OIDC_ISSUER: 'https://idp.example', OIDC_AUDIENCE: 'rotator', OIDC_ROLE_CLAIM: 'realm_access.roles', OIDC_ROLE_MAP: 'rotator-admins:admin, sre:operator,team:x:viewer' });
    expect(cfg.api.oidc).toEqual({ jwksUrl: 'https://idp.example/jwks', issuer: 'https://idp.example', audience: 'rotator', roleClaim: 'realm_access.roles', roleMap: { 'rotator-admins': 'admin', sre: 'operator', 'team:x': 'viewer' } });
    expect(problems({ OIDC_JWKS_URL: 'https://idp.example/jwks' })).toEqual([expect.stringMatching(/OIDC_ISSUER and OIDC_AUDIENCE are required/)]);
    expect(problems({ OIDC_JWKS_URL: 'https://idp.example/jwks', OIDC_ISSUER: 'i', OIDC_AUDIENCE: 'a', OIDC_ROLE_MAP: 'sre:root' })).toEqual([expect.stringMatching(/OIDC_ROLE_MAP entry "sre:root"/)]);
  });

  it('parses rate-limit windows and checks origins and policies', () => {
    expect(load({ RATE_LIMIT_WINDOW: '500ms' }).api.rateLimitWindowMs).toBe(500);
    expect(load({ RATE_LIMIT_WINDOW: '2m', RATE_LIMIT_MAX: '10' }).api).toMatchObject({ rateLimitWindowMs: 120_000, rateLimitMax: 10 });
    expect(load({ CORS_ORIGINS: 'https://a.example, http://localhost:3000' }).api.corsOrigins).toEqual(['https://a.example', 'http://localhost:3000']);
    expect(load({ ROTATION_POLICY: 'monthly', ACCOUNT_SYNC_SECONDS: '0' })).toMatchObject({ rotationPolicy: 'monthly', accountSyncIntervalMs: 0 });
    const found = problems({ RATE_LIMIT_WINDOW: 'soon', CORS_ORIGINS: '*', ROTATION_POLICY: 'weekly', RATE_LIMIT_MAX: '0' });
    expect(found).toHaveLength(4);
    for (const name of ['RATE_LIMIT_MAX', 'RATE_LIMIT_WINDOW', 'CORS_ORIGINS', 'ROTATION_POLICY']) expect(found.some((p) => p.startsWith(name))).toBe(true);
  });

  it('reads METRICS_PORT (a worker-only process serves /metrics there): none by default, a port, or a clear problem', () => {
    expect(load({}).metricsPort).toBe(0);
    expect(load({ METRICS_PORT: '9464' }).metricsPort).toBe(9464);
    for (const bad of ['70000', '-1', 'http', '94.5']) expect(problems({ METRICS_PORT: bad }), bad).toEqual([expect.stringMatching(/^METRICS_PORT must be/)]);
    // Its own listener: the API's port would serve /metrics no more.
    expect(problems({ METRICS_PORT: '8080' })).toEqual([expect.stringMatching(/^METRICS_PORT must differ from PORT \(8080\)/)]);
    expect(load({ METRICS_PORT: '8080', PORT: '8081' }).metricsPort).toBe(8080);
  });
});
