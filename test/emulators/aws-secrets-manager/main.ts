/**
 * `tsx test/emulators/aws-secrets-manager/main.ts --port 4566 [--region us-east-1]
 *  [--access-key test --secret-key test] [--no-verify-signatures] [--latency ms]`
 *
 * Prints one JSON line with the endpoint and credentials, then serves until SIGTERM/SIGINT.
 * Point Rotator at it with AWS_ENDPOINT_URL_SECRETS_MANAGER=<url>.
 */
import { parseArgs } from 'node:util';
import { startAwsSecretsManagerEmulator } from './server.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    region: { type: 'string', default: 'us-east-1' },
    'access-key': { type: 'string', default: 'test' },
    'secret-key': { type: 'string', default: 'test' },
    'no-verify-signatures': { type: 'boolean', default: false },
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

const emulator = await startAwsSecretsManagerEmulator({
  port: nonNegative('port', values.port),
  host: values.host,
  region: values.region,
  credentials: [{ accessKeyId: values['access-key'], secretAccessKey: values['secret-key'] }],
  verifySignatures: !values['no-verify-signatures'],
  latencyMs: nonNegative('latency', values.latency),
});

console.log(JSON.stringify({ url: emulator.url, region: emulator.region, accessKeyId: values['access-key'], secretAccessKey: values['secret-key'] }));

const stop = (): void => {
  emulator.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
