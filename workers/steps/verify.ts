import { sleep } from '../../src/domain/backoff.ts';
import { RotatorError } from '../../src/domain/errors.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import type { StepContext } from './context.ts';

/**
 * A key Twilio has just created can take a moment to be accepted everywhere; a 401 right after
 * creation is retried briefly before it counts as a permanent failure.
 */
export async function verifyWithPropagation(ctx: StepContext, c: TwilioApiKeyCredential, attempts = 4): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await ctx.twilio.verifyKey(c.accountSid, c.apiKeySid, c.apiKeySecret);
    } catch (err) {
      const unauthorized = err instanceof RotatorError && err.code === 'twilio_new_key_unauthorized';
      if (!unauthorized || i + 1 >= attempts) throw err;
      await sleep(250 * 2 ** i);
    }
  }
}
