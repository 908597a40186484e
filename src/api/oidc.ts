import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { OidcConfig } from '../config.ts';
import { ROLES, type Principal, type Role } from './tokens.ts';

/** Asymmetric algorithms only: a JWKS never holds a shared secret, and `none` is never accepted. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

export type OidcResult =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403 | 503; code: string; message: string };

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
