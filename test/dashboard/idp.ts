import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

/**
 * A real OpenID provider (panva's oidc-provider, certified) on localhost for the SSO sign-in tests:
 * 8.x, the newest line that supports Node 20 (9.x needs Node 22 LTS and warns "Unsupported runtime").
 * Its login and consent screens are replaced by one handler that signs in `nextUser` at once, so a
 * browser or a fetch loop follows the redirects without filling a form. Users carry a `roles` claim
 * in their ID token (scope `roles`).
 */
export interface TestOpenIdProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Who the next sign-in at the provider is (a key of `users`). */
  nextUser: string;
  users: Record<string, string[]>;
  close(): Promise<void>;
}

export async function startOpenIdProvider(opts: { redirectUrl: string; users: Record<string, string[]> }): Promise<TestOpenIdProvider> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  // localhost, not 127.0.0.1: the provider and Rotator are then two sites, as in production.
  const issuer = `http://localhost:${port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const idp: TestOpenIdProvider = {
    issuer,
    clientId: 'rotator-dashboard',
    clientSecret: `test-client-secret-${crypto.randomUUID()}`,
    nextUser: 'alice',
    users: opts.users,
    close: () => closeServer(server),
  };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: idp.clientId,
        client_secret: idp.clientSecret,
        redirect_uris: [opts.redirectUrl],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'test', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [crypto.randomUUID()] },
    claims: { openid: ['sub'], roles: ['roles'] },
    // Claims in the ID token itself (not only at userinfo), as IdPs are configured to release a groups claim.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub, roles: idp.users[sub] ?? [] }) }),
  });
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (!req.url?.startsWith('/interaction/')) {
      callback(req, res);
      return;
    }
    void (async () => {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        await provider.interactionFinished(req, res, { login: { accountId: idp.nextUser } }, { mergeWithLastSubmission: false });
        return;
      }
      const accountId = details.session!.accountId;
      const grant = details.grantId ? (await provider.Grant.find(details.grantId))! : new provider.Grant({ accountId, clientId: String(details.params.client_id) });
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    })().catch((err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  });
  return idp;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A free port for Rotator, chosen before its config is read (the redirect URL names it). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await closeServer(s);
  return port;
}

/** Cookies by host, enough for following a sign-in's redirects with fetch. */
export class CookieJar {
  readonly #byHost = new Map<string, Map<string, string>>();

  header(url: string): string {
    return [...(this.#byHost.get(new URL(url).host) ?? new Map<string, string>())].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  take(url: string, res: Response): void {
    const host = new URL(url).host;
    const jar = this.#byHost.get(host) ?? new Map<string, string>();
    this.#byHost.set(host, jar);
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const at = pair!.indexOf('=');
      const name = pair!.slice(0, at).trim();
      const value = pair!.slice(at + 1).trim();
      if (value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))) jar.delete(name);
      else jar.set(name, value);
    }
  }

  get(url: string, name: string): string | undefined {
    return this.#byHost.get(new URL(url).host)?.get(name);
  }
}

/**
 * Follows a sign-in from `start` through the provider until the provider sends the browser to
 * `stopAt` (the callback), which is returned unvisited so a test can tamper with it.
 */
export async function followUntil(jar: CookieJar, start: string, stopAt: string): Promise<string> {
  let url = start;
  for (let hop = 0; hop < 20; hop++) {
    if (url.startsWith(stopAt)) return url;
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url) } });
    jar.take(url, res);
    const location = res.headers.get('location');
    if (!location) throw new Error(`${url} answered ${res.status} without a redirect: ${(await res.text()).slice(0, 300)}`);
    url = new URL(location, url).href;
  }
  throw new Error('too many redirects');
}
