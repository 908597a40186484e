import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

const shas = new Map<string, string>();

/**
 * EVALSHA with a fallback to EVAL when the server does not know the script yet (first use, or
 * after a restart/failover). Sending only the 40-byte hash keeps hot paths — every record update,
 * every Twilio slot — from writing the whole script to the socket each time.
 */
export async function runScript(redis: Redis, script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown> {
  let sha = shas.get(script);
  if (!sha) {
    sha = createHash('sha1').update(script).digest('hex');
    shas.set(script, sha);
  }
  try {
    return await redis.evalsha(sha, numKeys, ...args);
  } catch (err) {
    if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
    return redis.eval(script, numKeys, ...args);
  }
}
