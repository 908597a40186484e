/**
 * `tsx test/emulators/vault/main.ts --port 8200 [--root-token root] [--mount secret]
 *  [--approle-role-id ID --approle-secret-id SECRET] [--approle-ttl 3600] [--latency ms]`
 *
 * Prints one JSON line with the address and credentials, then serves until SIGTERM/SIGINT. The
 * AppRole (when asked for) gets a `rotator` policy covering the whole KV mount.
 */
import { parseArgs } from 'node:util';
import { startVaultEmulator } from './server.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'root-token': { type: 'string', default: 'root' },
    mount: { type: 'string', default: 'secret' },
    'approle-role-id': { type: 'string' },
    'approle-secret-id': { type: 'string' },
    'approle-ttl': { type: 'string', default: '3600' },
    latency: { type: 'string', default: '0' },
  },
  strict: true,
});

function nonNegative(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer, got ${v}`);
    process.exit(2);
  }
  return n;
}

const mount = values.mount;
const emulator = await startVaultEmulator({
  port: nonNegative('port', values.port),
  host: values.host,
  rootToken: values['root-token'],
  mounts: [{ path: mount }],
  latencyMs: nonNegative('latency', values.latency),
  policies: {
    rotator: [
      { path: `${mount}/data/*`, capabilities: ['create', 'read', 'update'] },
      { path: `${mount}/metadata/*`, capabilities: ['create', 'read', 'update', 'list'] },
      { path: `${mount}/delete/*`, capabilities: ['update'] },
    ],
  },
});

let approle: { roleId: string; secretId: string } | undefined;
if (values['approle-role-id'] || values['approle-secret-id']) {
  approle = emulator.addAppRole({
    policies: ['rotator'],
    ...(values['approle-role-id'] ? { roleId: values['approle-role-id'] } : {}),
    ...(values['approle-secret-id'] ? { secretId: values['approle-secret-id'] } : {}),
    tokenTtl: nonNegative('approle-ttl', values['approle-ttl']),
  });
}

console.log(JSON.stringify({ url: emulator.url, rootToken: emulator.rootToken, mount, ...(approle ? { approle } : {}) }));

const stop = (): void => {
  emulator.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
