/**
 * A cap on concurrent Twilio requests. Twilio counts concurrency per account (20429 past about 100),
 * so the cap must hold across all workers and processes: RedisConcurrencyGate does that.
 */
export interface ConcurrencyGate {
  acquire(): Promise<() => void>;
}
