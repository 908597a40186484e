import { describe, expect, it } from 'vitest';
import { startupFailureLine } from '../../src/startup.ts';

/** What a start-up that failed in an unforeseen way prints: one line, and the fix when Redis went away. */
describe('startupFailureLine', () => {
  it('names Redis going away during start-up, not in ioredis words alone', () => {
    const err = Object.assign(new Error('Reached the max retries per request limit (which is 2). Refer to "maxRetriesPerRequest" option for details.'), { name: 'MaxRetriesPerRequestError' });
    expect(startupFailureLine(err)).toBe(
      'rotator failed to start: Redis stopped answering during start-up (Reached the max retries per request limit (which is 2). Refer to "maxRetriesPerRequest" option for details.): start rotator again once Redis answers',
    );
    expect(startupFailureLine(new Error('Connection is closed.'))).toMatch(/Redis stopped answering during start-up/);
  });

  it('keeps any other message as it is, on one line (a bare socket code may be the store or Twilio)', () => {
    expect(startupFailureLine(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8200'), { code: 'ECONNREFUSED' }))).toBe('rotator failed to start: connect ECONNREFUSED 127.0.0.1:8200');
    expect(startupFailureLine(new Error('something\n  else'))).toBe('rotator failed to start: something else');
  });
});
