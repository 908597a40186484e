import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A CA and a server certificate it signed, as PEM files (what redis-server's tls-* settings take). */
export interface TestCertificates {
  /** The CA's certificate: REDIS_TLS_CA_FILE, and redis-server's tls-ca-cert-file. */
  caFile: string;
  /** The server's certificate (for 127.0.0.1 and localhost) and key. */
  certFile: string;
  keyFile: string;
}

function openssl(cwd: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || String(r.error)).slice(-500)}`);
}

/**
 * A throwaway CA and a server certificate signed by it, made with the openssl CLI in `dir` (P-256
 * keys: quick to make on a loaded host). The server certificate names 127.0.0.1 and localhost, so
 * Node's hostname check passes for a client connecting to 127.0.0.1. Call twice for two CAs that
 * do not trust each other's certificates.
 */
export function makeTestCertificates(dir: string, name = 'test'): TestCertificates {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-keyout', `${name}-ca.key`, '-out', `${name}-ca.crt`, '-subj', `/CN=${name} throwaway CA`, '-days', '2']);
  openssl(dir, ['req', ...ec, '-keyout', `${name}-server.key`, '-out', `${name}-server.csr`, '-subj', '/CN=localhost']);
  writeFileSync(join(dir, `${name}-server.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  openssl(dir, ['x509', '-req', '-in', `${name}-server.csr`, '-CA', `${name}-ca.crt`, '-CAkey', `${name}-ca.key`, '-CAcreateserial', '-out', `${name}-server.crt`, '-days', '2', '-extfile', `${name}-server.ext`]);
  return { caFile: join(dir, `${name}-ca.crt`), certFile: join(dir, `${name}-server.crt`), keyFile: join(dir, `${name}-server.key`) };
}

/** redis-server (or Sentinel) settings that serve TLS only, on `port`, with these certificates; clients need no certificate. */
export function tlsOnlyConfig(port: number, certs: TestCertificates): string[] {
  return [
    'port 0',
    `tls-port ${port}`,
    `tls-cert-file ${certs.certFile}`,
    `tls-key-file ${certs.keyFile}`,
    `tls-ca-cert-file ${certs.caFile}`,
    'tls-auth-clients no',
    // Replication, and a Sentinel's links to the data nodes and the other Sentinels, over TLS too.
    'tls-replication yes',
  ];
}
