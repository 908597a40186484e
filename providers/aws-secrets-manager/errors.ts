import { StoreError } from '../store-error.ts';

/** What the store was doing when AWS answered with an error; it goes into the operator's message. */
export interface AwsCallContext {
  operation: string;
  secretId?: string;
}

interface AwsErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_SOCKET_CONNECTION_TIMEOUT']);
const TRANSIENT_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'InternalServiceError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'AbortError',
]);

export function awsErrorName(err: unknown): string | undefined {
  const name = (err as AwsErrorShape | null)?.name;
  return typeof name === 'string' ? name : undefined;
}

/**
 * Maps an AWS SDK error to a StoreError. The SDK error itself is never kept as `cause`: a cause is
 * printed by util.inspect and loggers, and SDK errors carry the raw HTTP response. The replacement
 * cause holds only the error name, HTTP status and request id, which is what AWS support asks for.
 */
export function toStoreError(err: unknown, ctx: AwsCallContext): StoreError {
  if (err instanceof StoreError) return err;
  const e = (err ?? {}) as AwsErrorShape;
  const name = awsErrorName(err) ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const code = typeof e.code === 'string' ? e.code : undefined;
  const said = awsSaid(e.message);
  const action = `secretsmanager:${ctx.operation}`;
  const on = ctx.secretId ? ` on secret "${ctx.secretId}"` : '';
  const cause = new Error(
    [name, code, status ? `HTTP ${status}` : undefined, e.$metadata?.requestId ? `request id ${e.$metadata.requestId}` : undefined].filter(Boolean).join(', '),
  );
  const make = (c: ConstructorParameters<typeof StoreError>[0], message: string): StoreError => new StoreError(c, message, cause);

  switch (name) {
    case 'AccessDeniedException':
    case 'AccessDenied':
      return make(
        'store_permission',
        `AWS Secrets Manager denied ${action}${on}: allow "${action}" ${ctx.secretId ? 'on this secret' : 'on Resource "*"'} in the IAM policy of the principal Rotator runs as${said}`,
      );
    case 'UnrecognizedClientException':
    case 'InvalidClientTokenId':
      return make(
        'store_permission',
        `AWS does not recognise the access key Rotator used for ${action}: check AWS_ACCESS_KEY_ID (or the profile / role Rotator's credentials come from) and the region${said}`,
      );
    case 'InvalidSignatureException':
    case 'SignatureDoesNotMatch':
    case 'IncompleteSignature':
      return make(
        'store_permission',
        `AWS rejected the request signature for ${action}: check AWS_SECRET_ACCESS_KEY (it must belong to AWS_ACCESS_KEY_ID) and that the system clock is right${said}`,
      );
    case 'ExpiredTokenException':
    case 'ExpiredToken':
    case 'RequestExpired':
      return make('store_permission', `the AWS session credentials Rotator used for ${action} have expired: refresh AWS_SESSION_TOKEN or the role session${said}`);
    case 'CredentialsProviderError':
    case 'MissingAuthenticationTokenException':
      return make(
        'store_permission',
        `no AWS credentials for ${action}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the host an IAM role`,
      );
    case 'DecryptionFailure':
      return make('store_permission', `AWS Secrets Manager could not decrypt${on} with its KMS key: allow "kms:Decrypt" on that key for Rotator's principal${said}`);
    case 'EncryptionFailure':
      return make('store_permission', `AWS Secrets Manager could not encrypt${on} with its KMS key: allow "kms:GenerateDataKey" on that key for Rotator's principal${said}`);
    case 'ResourceExistsException':
      return make('store_conflict', `${action}${on} collided with an existing version or secret written by another writer: re-read and retry${said}`);
    case 'InvalidParameterException':
    case 'ValidationException':
      // Label-move races are retried inside the store; what reaches here is a request AWS will never accept.
      return make('store_config', `AWS Secrets Manager rejected the parameters of ${action}${on} (check SECRET_PATH_TEMPLATE: secret names allow letters, digits and /_+=.@-)${said}`);
    case 'InvalidRequestException':
      return make('store_state', `AWS Secrets Manager refused ${action}${on} in the secret's current state${said}`);
    case 'LimitExceededException':
      return make('store_state', `AWS Secrets Manager refused ${action}${on}: a quota is exhausted (too many versions or secrets)${said}`);
    case 'ResourceNotFoundException':
      return make('store_state', `AWS Secrets Manager has no such secret or version for ${action}${on}${said}`);
  }
  if (TRANSIENT_NAMES.has(name) || (code !== undefined && NETWORK_CODES.has(code)) || (status !== undefined && status >= 500) || e.$fault === 'server') {
    const why = code && NETWORK_CODES.has(code) ? `cannot reach AWS Secrets Manager (${code})` : `AWS Secrets Manager is unavailable or throttling (${name}${status ? `, HTTP ${status}` : ''})`;
    return make('store_unavailable', `${why} during ${action}${on}: retry later`);
  }
  if (typeof e.message === 'string' && /region is missing/i.test(e.message)) {
    return make('store_config', 'no AWS region configured: set AWS_REGION');
  }
  if (status === undefined && e.$fault === undefined) {
    // No HTTP answer at all and no AWS error name: a transport failure the SDK did not classify.
    return make('store_unavailable', `cannot reach AWS Secrets Manager during ${action}${on} (${code ?? name}): retry later`);
  }
  return make('store_config', `AWS Secrets Manager rejected ${action}${on} (${name})${said}`);
}

function awsSaid(message: unknown): string {
  if (typeof message !== 'string' || message.length === 0 || message === 'UnknownError') return '';
  return ` (AWS: ${message.length > 300 ? `${message.slice(0, 300)}…` : message})`;
}
