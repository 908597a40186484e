import { execFileSync, spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { openSecretStore } from '../../src/stores.ts';

const TOKEN = 'hvs.tls-probe-token-must-not-leave';
const SECRET_ID = 'approle-secret-id-must-not-be-printed';

/**
 * node-vault turns certificate checks off when VAULT_SKIP_VERIFY holds any text ("false" too). A
 * real HTTPS server with a self-signed certificate (made with openssl at test time) stands in for
 * a Vault an attacker put on the path: it must never see a request, let alone the token.
 */
describe('Vault TLS verification', () => {
  let dir: string;
  let server: Server;
  let addr: string;
  const seen: Array<{ url: string; token?: string; body: string }> = [];
  const savedEnv = { ...process.env };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-vault-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    server = createServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) }, (req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', token: req.headers['x-vault-token'] as string | undefined, body });
        res.setHeader('content-type', 'application/json');
        if (req.url?.includes('/auth/approle/login')) res.end(JSON.stringify({ auth: { client_token: TOKEN, lease_duration: 600, renewable: false } }));
        else res.writeHead(404).end(JSON.stringify({ errors: [] }));
      });
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    addr = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
    Object.assign(process.env, savedEnv);
    seen.length = 0;
  });
  afterAll(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const vaultEnv = (extra: Record<string, string> = {}) => ({ REDIS_URL: 'redis://127.0.0.1:1', SECRET_STORE: 'vault', VAULT_ADDR: addr, VAULT_TOKEN: TOKEN, ...extra });
  const open = async (extra: Record<string, string> = {}) => openSecretStore(loadConfig(vaultEnv(extra), { requireTwilio: false }).store);

  it('sends nothing to a server whose certificate it cannot verify, whatever VAULT_SKIP_VERIFY says', async () => {
    for (const value of ['false', '0', 'true']) {
        // node-vault reads the process environment itself.
      process.env.VAULT_SKIP_VERIFY = value;
      const cfg = loadConfig(vaultEnv({ VAULT_SKIP_VERIFY: value }), { requireTwilio: false });
      expect(cfg.warnings).toEqual([expect.stringMatching(/^VAULT_SKIP_VERIFY is ignored/)]);
      const store = await openSecretStore(cfg.store);
      await expect(store.readCurrent('twilio/x'), value).rejects.toMatchObject({ code: 'store_unavailable', message: expect.stringMatching(/TLS certificate .* was not accepted .*VAULT_CACERT/) });
      await store.close();
    }
    expect(seen).toEqual([]);
  });

  it('trusts a private CA given in VAULT_CACERT', async () => {
    process.env.VAULT_SKIP_VERIFY = 'false';
    const store = await open({ VAULT_CACERT: join(dir, 'cert.pem') });
    expect(await store.readCurrent('twilio/x')).toBeUndefined();
    await store.close();
    expect(seen.filter((r) => r.url.startsWith('/v1/secret/'))).toEqual([expect.objectContaining({ url: '/v1/secret/data/twilio/x', token: TOKEN })]);
    await expect(open({ VAULT_CACERT: join(dir, 'missing.pem') })).rejects.toMatchObject({ code: 'store_config', message: expect.stringMatching(/VAULT_CACERT .*missing\.pem cannot be read/) });
  });

  it('skips verification only for VAULT_TLS_SKIP_VERIFY=true, with a warning; refuses other values', async () => {
    const cfg = loadConfig(vaultEnv({ VAULT_TLS_SKIP_VERIFY: 'true' }), { requireTwilio: false });
    expect(cfg.warnings).toEqual([expect.stringMatching(/^VAULT_TLS_SKIP_VERIFY=true: Vault's TLS certificate is not verified/)]);
    const store = await openSecretStore(cfg.store);
    expect(await store.readCurrent('twilio/x')).toBeUndefined();
    await store.close();
    expect(seen.filter((r) => r.url.startsWith('/v1/secret/'))).toHaveLength(1);
    expect(() => loadConfig(vaultEnv({ VAULT_TLS_SKIP_VERIFY: '1' }), { requireTwilio: false })).toThrow(/VAULT_TLS_SKIP_VERIFY must be true or false/);
  });

  it("never prints node-vault's or its transport's debug output (AppRole secret_id, Vault token), even with DEBUG=*", async () => {
    // Plain HTTP: what is printed does not depend on TLS.
    const bodies: string[] = [];
    const plain = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        bodies.push(body);
        res.setHeader('content-type', 'application/json');
        if (req.url?.includes('/auth/approle/login')) res.end(JSON.stringify({ auth: { client_token: TOKEN, lease_duration: 600, renewable: false } }));
        else res.writeHead(404).end(JSON.stringify({ errors: [] }));
      });
    });
    await new Promise<void>((done) => plain.listen(0, '127.0.0.1', done));
    const plainAddr = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    const probe = join(dir, 'probe.mts');
    await writeFile(
      probe,
      `import { createVaultStore } from ${JSON.stringify(resolve('providers/vault/index.ts'))};
const store = createVaultStore({ addr: ${JSON.stringify(plainAddr)}, approle: { roleId: 'role', secretId: ${JSON.stringify(SECRET_ID)} } });
console.log('read', await store.readCurrent('twilio/x'));
await store.close();
`,
    );
    const out = await new Promise<string>((done) => {
      const child = spawn(process.execPath, ['--import', 'tsx', probe], { env: { PATH: process.env.PATH ?? '', DEBUG: 'node-vault,*', DEBUG_COLORS: 'no' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('exit', () => done(text));
    });
    plain.close();
    expect(out).toMatch(/read undefined/);
    expect(bodies[0]).toContain(SECRET_ID);
    expect(out).not.toContain(SECRET_ID);
    expect(out).not.toContain(TOKEN);
  });
});
