import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startAwsSecretsManagerEmulator, type AwsSecretsManagerEmulator } from '../emulators/aws-secrets-manager/server.ts';
import { startVaultEmulator, type VaultEmulator } from '../emulators/vault/server.ts';
import { motoUnavailableReason, startMotoServer } from './moto.ts';

export type StoreKind = 'file' | 'aws' | 'vault';
export const STORE_KINDS: readonly StoreKind[] = ['file', 'aws', 'vault'];

/** A store kind on a given backend: `aws-moto` is the AWS store on moto's server instead of our emulator. */
export type StoreBackendKind = StoreKind | 'aws-moto';
/**
 * The backends the engine's end-to-end tests (zero downtime, crash safety) run on: every store, and
 * the AWS store once more on a second, independent implementation of the API. moto cannot inject
 * faults, so fault tests stay on STORE_KINDS.
 */
export const ENGINE_STORE_BACKENDS: readonly StoreBackendKind[] = [...STORE_KINDS, 'aws-moto'];

const announced = new Set<StoreBackendKind>();
/** Why this backend cannot run on this machine (printed once per process), or undefined. */
export function storeBackendUnavailable(kind: StoreBackendKind): string | undefined {
  const why = kind === 'aws-moto' ? motoUnavailableReason() : undefined;
  if (why && !announced.has(kind)) {
    announced.add(kind);
    console.log(`${kind} store backend skipped: ${why}`);
  }
  return why;
}

/** A store backend for an end-to-end test: the environment that points Rotator at it, and its faults. */
export interface StoreBackend {
  kind: StoreBackendKind;
  env: Record<string, string>;
  /** Credentials of the store itself: must never leak either. */
  secrets: string[];
  /** All requests fail (AWS 503 / Vault sealed / file store directory unreadable). */
  setDown(down: boolean): Promise<void>;
  /** Reads work, writes are refused for lack of permission. */
  denyWrites(deny: boolean): Promise<void>;
  close(): Promise<void>;
  aws?: AwsSecretsManagerEmulator;
  vault?: VaultEmulator;
}

export async function startStoreBackend(kind: StoreBackendKind, dir: string): Promise<StoreBackend> {
  if (kind === 'aws-moto') {
    const moto = await startMotoServer();
    const cannot = async (): Promise<never> => {
      throw new Error('moto_server cannot simulate store faults: use the aws (emulator) backend');
    };
    return {
      kind,
      env: {
        SECRET_STORE: 'aws',
        AWS_ENDPOINT_URL_SECRETS_MANAGER: moto.url,
        AWS_REGION: moto.region,
        AWS_ACCESS_KEY_ID: moto.accessKeyId,
        AWS_SECRET_ACCESS_KEY: moto.secretAccessKey,
      },
      secrets: [moto.secretAccessKey],
      setDown: cannot,
      denyWrites: cannot,
      close: () => moto.close(),
    };
  }
  if (kind === 'aws') {
    const accessKeyId = 'AKIAROTATORE2ETESTS1';
    const secretAccessKey = `aws-${randomBytes(16).toString('hex')}`;
    const aws = await startAwsSecretsManagerEmulator({ credentials: [{ accessKeyId, secretAccessKey, userName: 'rotator' }] });
    return {
      kind,
      aws,
      env: { SECRET_STORE: 'aws', AWS_ENDPOINT_URL_SECRETS_MANAGER: aws.url, AWS_REGION: aws.region, AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey },
      secrets: [secretAccessKey],
      setDown: async (down) => (down ? aws.setDown(true) : aws.heal()),
      denyWrites: async (deny) => aws.denyWrites(deny),
      close: () => aws.close(),
    };
  }
  if (kind === 'vault') {
    const vault = await startVaultEmulator();
    vault.setPolicy('rotator', [
      { path: 'secret/data/twilio/*', capabilities: ['create', 'read', 'update'] },
      { path: 'secret/metadata/twilio/*', capabilities: ['create', 'read', 'update'] },
      { path: 'secret/delete/twilio/*', capabilities: ['update'] },
    ]);
    const token = vault.createToken({ policies: ['rotator'] });
    return {
      kind,
      vault,
      env: { SECRET_STORE: 'vault', VAULT_ADDR: vault.url, VAULT_TOKEN: token },
      secrets: [token],
      setDown: async (down) => (down ? vault.setDown(true) : vault.heal()),
      denyWrites: async (deny) => vault.denyWrites(deny),
      close: () => vault.close(),
    };
  }
  const key = randomBytes(32).toString('base64');
  return {
    kind,
    env: { SECRET_STORE: 'file', FILE_STORE_PATH: join(dir, 'secrets'), FILE_STORE_KEY: key },
    secrets: [key],
    setDown: async () => {
      throw new Error('file store outages are not simulated here');
    },
    denyWrites: async () => {
      throw new Error('file store write denial is not simulated here');
    },
    close: async () => undefined,
  };
}
