import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import type { SecretStore } from '../secret-store.ts';
import { AwsSecretsManagerStore } from './store.ts';

export { AwsSecretsManagerStore, PLACEHOLDER_VALUE } from './store.ts';

export interface AwsSecretsManagerStoreOptions {
  /** Else the SDK's own resolution (AWS_REGION, profile). */
  region?: string;
  /** Else the SDK's own resolution, which honours AWS_ENDPOINT_URL_SECRETS_MANAGER. */
  endpoint?: string;
  /** Else the SDK's default credential chain. */
  credentials?: SecretsManagerClientConfig['credentials'];
  /** Added to secrets Rotator creates, next to `managed-by: rotator`. */
  tags?: Record<string, string>;
  /** SDK attempts per call, retries included (SDK default 3). */
  maxAttempts?: number;
  /** A ready client (tests, custom middleware); the options above are then ignored and close() leaves it open. */
  client?: SecretsManagerClient;
}

export function createAwsSecretsManagerStore(opts: AwsSecretsManagerStoreOptions = {}): SecretStore {
  const client =
    opts.client ??
    new SecretsManagerClient({
      ...(opts.region ? { region: opts.region } : {}),
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.maxAttempts ? { maxAttempts: opts.maxAttempts } : {}),
    });
  return new AwsSecretsManagerStore({ client, tags: opts.tags ?? {}, ownsClient: !opts.client });
}
