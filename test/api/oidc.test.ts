import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type ConfigError } from '../../src/config.ts';
import { createOidcVerifier, type OidcVerifier } from '../../src/api/oidc.ts';
import { AUDIENCE, ISSUER, startIdp, type TestIdp } from './support.ts';

const base = { REDIS_URL: 'redis://127.0.0.1:1', DATA_DIR: '/tmp/rotator-config-test', OIDC_ISSUER: ISSUER, OIDC_AUDIENCE: AUDIENCE };
const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig({ ...base, ...env }, { requireTwilio: false });
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('OIDC: where the keys come from and which claim grants roles', () => {
  it('refuses a JWKS over plain http (anyone on the path could mint admin tokens), except to loopback', () => {
    for (const url of ['http://idp.example.com/jwks.json', 'http://10.0.0.5/jwks', 'ftp://idp.example.com/jwks', 'not a url']) {
      expect(problems({ OIDC_JWKS_URL: url }), url).toEqual([expect.stringMatching(/^OIDC_JWKS_URL must be an https URL/)]);
    }
    for (const url of ['https://idp.example.com/jwks.json', 'http://127.0.0.1:8080/jwks', 'http://localhost/jwks', 'http://[::1]:9000/jwks']) {
      expect(problems({ OIDC_JWKS_URL: url }), url).toEqual([]);
    }
  });

  it('SSO sign-in needs the issuer, client id, client secret and redirect URL together, the callback path and https', () => {
    const sso = { OIDC_CLIENT_ID: 'rotator', OIDC_CLIENT_SECRET: 'shh-its-a-secret', OIDC_REDIRECT_URL: 'https://rotator.example.com/v1/session/oidc/callback' };
    expect(problems(sso)).toEqual([]);
    const cfg = loadConfig({ ...base, ...sso, OIDC_SCOPES: 'groups openid' }, { requireTwilio: false });
    expect(cfg.api.oidcSignIn).toMatchObject({ issuer: ISSUER, clientId: 'rotator', scope: 'openid groups', roleClaim: 'roles' });
    expect(JSON.stringify(cfg.api.oidcSignIn)).not.toContain('shh-its-a-secret');
    expect(problems({ ...sso, OIDC_CLIENT_SECRET: '' })).toEqual([expect.stringMatching(/OIDC_CLIENT_SECRET is not set/)]);
    expect(problems({ OIDC_CLIENT_ID: 'rotator', OIDC_ISSUER: '' })).toEqual([expect.stringMatching(/OIDC_ISSUER, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URL are not set/)]);
    expect(problems({ ...sso, OIDC_REDIRECT_URL: 'https://rotator.example.com/callback' })).toEqual([expect.stringMatching(/^OIDC_REDIRECT_URL must be this API's \/v1\/session\/oidc\/callback/)]);
    expect(problems({ ...sso, OIDC_ISSUER: 'http://idp.example.com' })).toEqual([expect.stringMatching(/^OIDC_ISSUER must be an https URL/)]);
    expect(problems({ ...sso, OIDC_ROLE_MAP: 'admins' })).toEqual([expect.stringMatching(/^OIDC_ROLE_MAP entry "admins"/)]);
  });

  describe('without OIDC_ROLE_MAP', () => {
    let idp: TestIdp;
    let verify: OidcVerifier;
    beforeAll(async () => {
      idp = await startIdp();
      const cfg = loadConfig({ ...base, OIDC_JWKS_URL: idp.jwksUrl }, { requireTwilio: false });
      verify = createOidcVerifier(cfg.api.oidc!);
    });
    afterAll(async () => idp?.close());

    it('reads roles from the `roles` claim only: a `groups` claim naming a role grants nothing', async () => {
      expect(await verify(await idp.sign({ sub: 'joiner', groups: ['admin'] }))).toMatchObject({ ok: false, status: 403, message: expect.stringMatching(/roles claim/) });
      expect(await verify(await idp.sign({ sub: 'both', roles: ['viewer'], groups: ['admin'] }))).toMatchObject({ ok: true, principal: { name: 'oidc:both', role: 'viewer' } });
      const exp = Math.floor(Date.now() / 1000) + 600;
      expect(await verify(await idp.sign({ sub: 'ops', roles: ['operator'] }, { expiresIn: exp }))).toEqual({ ok: true, principal: { name: 'oidc:ops', role: 'operator', expiresAt: exp * 1000 } });
    });

    it('reads the one claim OIDC_ROLE_CLAIM names', async () => {
      const cfg = loadConfig({ ...base, OIDC_JWKS_URL: idp.jwksUrl, OIDC_ROLE_CLAIM: 'groups' }, { requireTwilio: false });
      const byGroups = createOidcVerifier(cfg.api.oidc!);
      expect(await byGroups(await idp.sign({ sub: 'g', groups: ['admin'] }))).toMatchObject({ ok: true, principal: { role: 'admin' } });
      expect(await byGroups(await idp.sign({ sub: 'r', roles: ['admin'] }))).toMatchObject({ ok: false, status: 403 });
    });
  });
});
