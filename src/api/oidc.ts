import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import * as oidcClient from 'openid-client';
import { OIDC_CALLBACK_PATH, type OidcConfig, type OidcSignInConfig } from '../config.ts';
import { HttpError } from './errors.ts';
import { ROLES, type Principal, type Role } from './tokens.ts';

/** Asymmetric algorithms only: a JWKS never holds a shared secret, and `none` is never accepted. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

export type OidcResult =
  | { ok: true; principal: Principal }
  | { ok: false; status: 400 | 401 | 403 | 503; code: string; message: string };

export type OidcVerifier = (jwt: string) => Promise<OidcResult>;

/** A compact JWS: three base64url parts. Anything else is an API token. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

/**
 * Bearer JWTs from an SSO provider: signature checked against its JWKS (fetched and cached by
 * jose, refetched on an unknown `kid` at most once per cooldown), issuer, audience and expiry
 * required; the role is the highest one the role claim maps to.
 */
export function createOidcVerifier(cfg: OidcConfig, opts: { fetchTimeoutMs?: number } = {}): OidcVerifier {
  const jwks = createRemoteJWKSet(new URL(cfg.jwksUrl), { timeoutDuration: opts.fetchTimeoutMs ?? 5_000, cooldownDuration: 30_000, cacheMaxAge: 600_000 });
  return async (jwt) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(jwt, jwks, {
        issuer: cfg.issuer,
        audience: cfg.audience,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: 30,
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWKSTimeout || (err instanceof Error && !(err instanceof joseErrors.JOSEError))) {
        // The identity provider could not be reached: not the client's fault, and not a reason to let it in.
        return { ok: false, status: 503, code: 'auth_unavailable', message: 'the identity provider\'s keys (OIDC_JWKS_URL) could not be fetched; try again shortly' };
      }
      return { ok: false, status: 401, code: 'unauthorized', message: `bearer token rejected: ${describeJoseError(err)}` };
    }
    const values = claimValues(payload, cfg.roleClaim);
    const role = highestRole(values, cfg.roleMap);
    const name = `oidc:${String(payload.sub).slice(0, 128)}`;
    if (!role) return { ok: false, status: 403, code: 'forbidden', message: `"${name}" has no Rotator role: none of its ${cfg.roleClaim} claim values maps to one` };
    return { ok: true, principal: { name, role, expiresAt: Number(payload.exp) * 1000 } };
  };
}

/**
 * The values of one claim (OIDC_ROLE_CLAIM, default `roles`). One only: a provider may let users
 * or other applications set a claim Rotator was not told about (a `groups` they can join), and
 * reading a second one would let it grant roles.
 */
function claimValues(payload: JWTPayload, claim: string): string[] {
  let v: unknown = payload;
  for (const part of claim.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/** The highest operator role the claim values grant (SSO users are people: never the `consumer` role). */
function highestRole(values: string[], map: Record<string, Role> | undefined): Role | undefined {
  type OperatorRole = (typeof ROLES)[number];
  let best = -1;
  for (const v of values) {
    const role = map ? (Object.hasOwn(map, v) ? map[v] : undefined) : (ROLES as readonly string[]).includes(v) ? (v as Role) : undefined;
    if (role && role !== 'consumer') best = Math.max(best, ROLES.indexOf(role as OperatorRole));
  }
  return best >= 0 ? ROLES[best] : undefined;
}

/** jose's error codes say what was wrong without echoing the token. */
function describeJoseError(err: unknown): string {
  const code = (err as { code?: string }).code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return `claim "${(err as { claim?: string }).claim ?? '?'}" is not acceptable`;
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'bad signature';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'signed by a key the identity provider does not publish';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'algorithm not allowed';
    default:
      return 'not a valid token';
  }
}

/**
 * The dashboard's SSO sign-in (issue 14): OpenID Connect's authorization code flow with PKCE, a
 * state and a nonce, through openid-client. A sign-in in progress is a record in Redis (its
 * verifier, state and nonce) under the SHA-256 of a random value held in an httpOnly cookie, so the
 * callback finishes only in the browser that started it, and only once.
 */
export interface OidcSignIn {
  /** Where to send the browser, and the cookie value that binds the callback to it. */
  start(): Promise<{ location: string; binding: string }>;
  /** The callback's query: the principal, or why not (never echoing the code or the state). */
  finish(binding: string | undefined, query: string): Promise<OidcResult>;
}

/** How long a sign-in may take at the identity provider. */
export const SIGN_IN_TTL_SECONDS = 600;

interface Transaction {
  s: string;
  n: string;
  v: string;
}

export function createOidcSignIn(
  cfg: OidcSignInConfig,
  deps: { redis: Pick<Redis, 'set' | 'getdel'>; key: (bindingHash: string) => string; timeoutSeconds?: number },
): OidcSignIn {
  let discovered: Promise<oidcClient.Configuration> | undefined;
  const configuration = (): Promise<oidcClient.Configuration> => {
    discovered ??= oidcClient
      .discovery(new URL(cfg.issuer), cfg.clientId, undefined, oidcClient.ClientSecretPost(cfg.clientSecret.reveal()), {
        timeout: deps.timeoutSeconds ?? 10,
        // config.ts allows plain http to loopback only (tests, a sidecar).
        ...(new URL(cfg.issuer).protocol === 'http:' ? { execute: [oidcClient.allowInsecureRequests] } : {}),
      })
      .catch((err: unknown) => {
        discovered = undefined;
        throw err;
      });
    return discovered;
  };
  const keyOf = (binding: string) => deps.key(`oidc:${createHash('sha256').update(binding, 'utf8').digest('base64url')}`);
  const unavailable = { ok: false, status: 503, code: 'auth_unavailable', message: `the identity provider (OIDC_ISSUER ${cfg.issuer}) could not be reached; try again shortly` } as const;

  return {
    async start() {
      let config: oidcClient.Configuration;
      try {
        config = await configuration();
      } catch {
        throw new HttpError(unavailable.status, unavailable.code, unavailable.message);
      }
      const t: Transaction = { s: oidcClient.randomState(), n: oidcClient.randomNonce(), v: oidcClient.randomPKCECodeVerifier() };
      const binding = randomBytes(32).toString('base64url');
      await deps.redis.set(keyOf(binding), JSON.stringify(t), 'EX', SIGN_IN_TTL_SECONDS);
      const url = oidcClient.buildAuthorizationUrl(config, {
        redirect_uri: cfg.redirectUrl,
        scope: cfg.scope,
        code_challenge: await oidcClient.calculatePKCECodeChallenge(t.v),
        code_challenge_method: 'S256',
        state: t.s,
        nonce: t.n,
      });
      return { location: url.href, binding };
    },

    async finish(binding, query) {
      // Single use: a replayed callback (or a second tab) finds nothing.
      const text = binding && /^[A-Za-z0-9_-]{43}$/.test(binding) ? await deps.redis.getdel(keyOf(binding)) : null;
      if (!text) return { ok: false, status: 401, code: 'oidc_sign_in_unknown', message: `no sign-in was started in this browser, or it took over ${SIGN_IN_TTL_SECONDS / 60} minutes: start again from the sign-in page` };
      const t = JSON.parse(text) as Transaction;
      const params = new URLSearchParams(query);
      const refused = params.get('error');
      if (refused !== null) {
        return { ok: false, status: 401, code: 'oidc_refused', message: `the identity provider refused the sign-in: ${refused.replace(/[^\w.-]/g, '').slice(0, 64)}` };
      }
      let config: oidcClient.Configuration;
      try {
        config = await configuration();
      } catch {
        return unavailable;
      }
      let claims: JWTPayload | undefined;
      try {
        const tokens = await oidcClient.authorizationCodeGrant(config, new URL(`${cfg.redirectUrl}?${params.toString()}`), {
          pkceCodeVerifier: t.v,
          expectedState: t.s,
          expectedNonce: t.n,
          idTokenExpected: true,
        });
        claims = tokens.claims() as JWTPayload | undefined;
      } catch (err) {
        return callbackRefusal(err);
      }
      if (!claims?.sub) return { ok: false, status: 401, code: 'oidc_no_id_token', message: 'the identity provider answered without an ID token' };
      const name = `oidc:${String(claims.sub).slice(0, 128)}`;
      const role = highestRole(claimValues(claims, cfg.roleClaim), cfg.roleMap);
      if (!role) return { ok: false, status: 403, code: 'forbidden', message: `"${name}" has no Rotator role: none of its ${cfg.roleClaim} claim values maps to one (OIDC_ROLE_CLAIM, OIDC_ROLE_MAP)` };
      return { ok: true, principal: { name, role } };
    },
  };
}

/** Why a callback was refused, in words that name the check and never carry the code, state or tokens. */
function callbackRefusal(err: unknown): Extract<OidcResult, { ok: false }> {
  // openid-client wraps oauth4webapi's error, which names the check that failed.
  const message = err instanceof Error ? `${err.message} ${err.cause instanceof Error ? err.cause.message : ''}` : '';
  if (err instanceof oidcClient.ResponseBodyError) {
    return { ok: false, status: 401, code: 'oidc_code_refused', message: `the identity provider refused the authorization code (${err.error.replace(/[^\w.-]/g, '').slice(0, 64)}): start again from the sign-in page` };
  }
  if (/"state"/.test(message)) return { ok: false, status: 400, code: 'oidc_state_mismatch', message: 'the callback\'s state is not the one this sign-in sent: refused (start again from the sign-in page)' };
  if (/"nonce"/.test(message)) return { ok: false, status: 400, code: 'oidc_nonce_mismatch', message: 'the ID token\'s nonce is not the one this sign-in sent: refused (start again from the sign-in page)' };
  if (err instanceof TypeError || (err as { name?: string }).name === 'AbortError' || (err as { name?: string }).name === 'TimeoutError') {
    return { ok: false, status: 503, code: 'auth_unavailable', message: 'the identity provider could not be reached; try again shortly' };
  }
  return { ok: false, status: 400, code: 'oidc_callback_invalid', message: `the identity provider's answer was refused (${(err as { code?: string }).code ?? 'invalid'}): start again from the sign-in page` };
}

/**
 * Fastify's request serializer, but the SSO callback's query (an authorization code and its state)
 * is left out of request logs: a code is a credential until it is redeemed.
 */
export function logRequest(req: FastifyRequest): Record<string, unknown> {
  const url = req.url.startsWith(OIDC_CALLBACK_PATH) ? req.url.replace(/\?.*$/, '?[redacted]') : req.url;
  return { method: req.method, url, host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
}
