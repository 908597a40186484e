import { sleep } from '../../src/domain/backoff.ts';
import { RotatorError } from '../../src/domain/errors.ts';

/**
 * A credential Twilio has just created can take a moment to be accepted everywhere; a 401 right
 * after creation is retried briefly before it counts as a permanent failure.
 */
export async function verifyWithPropagation<T>(verify: () => Promise<T>, attempts = 4): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await verify();
    } catch (err) {
      const unauthorized = err instanceof RotatorError && err.code === 'twilio_new_key_unauthorized';
      if (!unauthorized || i + 1 >= attempts) throw err;
      await sleep(250 * 2 ** i);
    }
  }
}
