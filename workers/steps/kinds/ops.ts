import { PermanentError } from '../../../src/domain/errors.ts';
import type { CredentialKind } from '../../../src/domain/rotation.ts';
import type { AuthTokenOps, RestrictedKeyOps } from '../../../src/twilio/kinds.ts';
import type { StepContext } from '../context.ts';

/** The Twilio operations of the kinds beyond API keys; a worker built without them refuses those kinds. */
export function credentialOps(ctx: Pick<StepContext, 'credentialOps'>, kind: CredentialKind): RestrictedKeyOps & AuthTokenOps {
  if (!ctx.credentialOps) throw new PermanentError('kind_unsupported', `this worker has no Twilio operations for ${kind} credentials`);
  return ctx.credentialOps;
}
