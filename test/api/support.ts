import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import type { FastifyInstance } from 'fastify';
import { startStack, type Stack, type StackOptions } from '../helpers/stack.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { mintToken } from '../../src/api/tokens.ts';
import type { RotationRecord, RotationStatus, Step } from '../../src/domain/rotation.ts';

export const ISSUER = 'https://idp.test.example';
export const AUDIENCE = 'rotator-api';

/**
 * A local OIDC provider for tests: a JWKS served over node:http and tokens signed by jose with
 * the matching private key (real verification end to end; nothing mocked).
 */
export interface TestIdp {
  jwksUrl: string;
  sign(claims: JWTPayload, opts?: { expiresIn?: string | number; issuer?: string; audience?: string; key?: 'good' | 'rogue'; kid?: string }): Promise<string>;
  requests(): number;
  close(): Promise<void>;
}

export async function startIdp(): Promise<TestIdp> {
  const good = await generateKeyPair('ES256', { extractable: true });
  const rogue = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(good.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  let hits = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    async sign(claims, opts = {}) {
      const key: CryptoKey = opts.key === 'rogue' ? rogue.privateKey : good.privateKey;
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? 'k1' })
        .setIssuer(opts.issuer ?? ISSUER)
        .setAudience(opts.audience ?? AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(opts.expiresIn ?? '10m')
        .sign(key);
    },
    requests: () => hits,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface ApiHarness {
  stack: Stack;
  rt: Runtime;
  app: FastifyInstance;
  idp: TestIdp;
  tokens: { viewer: string; operator: string; admin: string; consumer: string };
  /** Every bearer credential the harness handed out (static tokens and signed JWTs): for leak scans. */
  issued: string[];
  jwt(role: 'viewer' | 'operator' | 'admin' | 'none', extra?: JWTPayload): Promise<string>;
  close(): Promise<void>;
}

/**
 * The stack (private Redis, Twilio emulator, file store), a local OIDC provider, tokens of every
 * role, and a runtime whose logs (trace level) are captured in `stack.logs`.
 */
export async function startApiHarness(
  opts: { env?: Record<string, string>; worker?: boolean; stack?: StackOptions; logLevel?: string; now?: () => number } = {},
): Promise<ApiHarness> {
  const stack = await startStack({ subaccounts: 3, ...opts.stack });
  const idp = await startIdp();
  const viewer = mintToken('dash', 'viewer');
  const operator = mintToken('ci', 'operator');
  const admin = mintToken('sec', 'admin');
  const consumer = mintToken('app-1', 'consumer');
  const cfg = loadConfig({
    ...stack.env,
    API_TOKENS: [viewer.entry, operator.entry, admin.entry, consumer.entry].join(','),
    OIDC_JWKS_URL: idp.jwksUrl,
    OIDC_ISSUER: ISSUER,
    OIDC_AUDIENCE: AUDIENCE,
    OIDC_ROLE_CLAIM: 'groups',
    OIDC_ROLE_MAP: 'rotator-viewers:viewer,sre:operator,rotator-admins:admin',
    RATE_LIMIT_MAX: '1000000',
    ACCOUNT_SYNC_SECONDS: '0',
    ...opts.env,
  });
  const rt = await startRuntime(cfg, { api: true, worker: opts.worker ?? false, log: createLogger(opts.logLevel ?? 'trace', stack.logs), ...(opts.now ? { now: opts.now } : {}) });
  const issued = [viewer.token, operator.token, admin.token, consumer.token];
  const groups = { viewer: ['rotator-viewers'], operator: ['sre', 'unrelated'], admin: ['rotator-admins'], none: ['marketing'] } as const;
  return {
    stack,
    rt,
    app: rt.app!,
    idp,
    tokens: { viewer: viewer.token, operator: operator.token, admin: admin.token, consumer: consumer.token },
    issued,
    async jwt(role, extra = {}) {
      const token = await idp.sign({ sub: `user-${role}`, groups: [...groups[role]], ...extra });
      issued.push(token);
      return token;
    },
    async close() {
      await rt.close();
      await idp.close();
      await stack.close();
    },
  };
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/**
 * Put a rotation record into a given state directly (no worker), for action-state rules: the
 * lock and indexes move as the real writes move them.
 */
export async function rotationIn(
  rt: Runtime,
  accountSid: string,
  status: RotationStatus,
  shape: { step?: Step; undo?: RotationRecord['undo']; newKeySid?: string; error?: RotationRecord['error'] } = {},
): Promise<RotationRecord> {
  const started = await rt.service.start({ accountSid, trigger: 'api', requestedBy: 'test' });
  if (!started.started) throw new Error(`a rotation is already in flight for ${accountSid}`);
  const at = new Date().toISOString();
  return rt.repo.update(
    started.record.id,
    (r) => ({
      ...r,
      status,
      step: shape.step ?? r.step,
      ...(shape.undo ? { undo: shape.undo } : {}),
      ...(shape.newKeySid ? { newKeySid: shape.newKeySid, oldKeySid: null } : {}),
      ...(shape.error ? { error: shape.error } : {}),
      ...(['succeeded', 'failed', 'cancelled', 'rolled_back'].includes(status) ? { finishedAt: at } : {}),
      updatedAt: at,
    }),
    { step: shape.step ?? 'create-secondary', status: status === 'failed' ? 'finished' : 'started', at },
  );
}
