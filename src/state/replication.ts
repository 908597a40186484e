import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** After a WAIT that timed out, the next ones are skipped for this long (each would cost the whole timeout). */
const DEGRADED_MS = 10_000;

/**
 * WAIT numreplicas timeout on `redis`: resolves once `replicas` replicas hold every write this
 * connection sent before it, or after `timeoutMs` with fewer. A replica that is gone (failed over,
 * restarting) must not add the timeout to every answer: after one WAIT falls short the next ones
 * are skipped for 10 s and the API answers as without Sentinel, with one warning a period.
 * Redis errors are left to the write itself to report: never a reason to fail an answer that
 * already happened.
 */
export function replicaWaiter(redis: Redis, o: { replicas: number; timeoutMs: number; log: Pick<Logger, 'warn'>; now?: () => number }): () => Promise<void> {
  const now = o.now ?? Date.now;
  let skipUntil = 0;
  const waitOnce = async (): Promise<void> => {
    const acked = Number(await redis.wait(o.replicas, o.timeoutMs).catch(() => o.replicas));
    if (acked < o.replicas) {
      skipUntil = now() + DEGRADED_MS;
      o.log.warn(
        `only ${acked} of ${o.replicas} Redis replica(s) acknowledged an API change within ${o.timeoutMs} ms (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS): a failover now could lose it; API answers do not wait for replicas for the next ${DEGRADED_MS / 1000} s`,
      );
    }
  };
  // WAIT blocks its connection until the replicas answer, and every command behind it waits too:
  // one WAIT in flight at a time. A change written while one is in flight may have been sent after
  // it, so it waits for the next, which all such changes share (bench/redis-wait.ts: with one WAIT
  // per change, 50 changes at once ran at a fifth of the rate without WAIT; shared, at about the same).
  let inFlight: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const start = (): Promise<void> => (inFlight = waitOnce().finally(() => (inFlight = undefined)));
  return async () => {
    if (now() < skipUntil) return;
    if (!inFlight) return start();
    next ??= inFlight.then(() => {
      next = undefined;
      return inFlight ?? start();
    });
    return next;
  };
}
