import type { SecretStore } from '../providers/secret-store.ts';
import type { StoreConfig } from './config.ts';

/** SECRET_STORE → the provider. Providers load lazily so a file-store install never loads the AWS SDK. */
export async function openSecretStore(cfg: StoreConfig): Promise<SecretStore> {
  switch (cfg.kind) {
    case 'file': {
      const { openFileStore } = await import('../providers/file/index.ts');
      return openFileStore({ dir: cfg.dir, keyFile: cfg.keyFile, ...(cfg.keyFileGiven ? { keyFileMustExist: true } : {}), ...(cfg.keyBase64 ? { keyBase64: cfg.keyBase64.reveal() } : {}) });
    }
    case 'aws': {
      const { createAwsSecretsManagerStore } = await import('../providers/aws-secrets-manager/index.ts');
      return createAwsSecretsManagerStore({ ...(cfg.region ? { region: cfg.region } : {}), ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}) });
    }
    case 'vault': {
      const { createVaultStore } = await import('../providers/vault/index.ts');
      return createVaultStore({
        addr: cfg.addr,
        mount: cfg.mount,
        ...(cfg.token ? { token: cfg.token.reveal() } : {}),
        ...(cfg.approle ? { approle: { roleId: cfg.approle.roleId, secretId: cfg.approle.secretId.reveal(), ...(cfg.approle.mount ? { mount: cfg.approle.mount } : {}) } } : {}),
        ...(cfg.namespace ? { namespace: cfg.namespace } : {}),
        tls: { skipVerify: cfg.tlsSkipVerify, ...(cfg.caCertFile ? { caFile: cfg.caCertFile } : {}) },
      });
    }
  }
}
