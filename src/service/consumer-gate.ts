import { decideGate, type ConsumerGatePolicy } from '../domain/consumers.ts';
import type { RotationRecord } from '../domain/rotation.ts';
import type { ConsumerRegistry } from '../state/consumers.ts';
import type { DrainGate } from '../../workers/steps/context.ts';

export interface ConsumerGateDeps {
  consumers: Pick<ConsumerRegistry, 'forCredential' | 'expiryMs'>;
  /** The consumer gate of the policy that applies to the credential (null: none). */
  policyOf(accountSid: string, credential: string): Promise<ConsumerGatePolicy | null>;
  /** How often a rotation waiting for consumers looks again when no heartbeat wakes it. */
  recheckMs: number;
}

/**
 * Promote's drain as the consumers report it (domain decideGate). Holds nothing in memory: the
 * reports are in Redis, the clock starts at the record's operationalizedAt, a force-promote is on
 * the record; a worker that dies mid-wait leaves nothing for the next to rebuild.
 */
export class ConsumerGate implements DrainGate {
  readonly #d: ConsumerGateDeps;

  constructor(deps: ConsumerGateDeps) {
    this.#d = deps;
  }

  async decide(rec: RotationRecord, now: number, drainEndsAt: number) {
    const [policy, consumers] = await Promise.all([this.#d.policyOf(rec.accountSid, rec.credential), this.#d.consumers.forCredential(rec.accountSid, rec.credential, now)]);
    const d = decideGate({
      policy,
      consumers,
      newKeySid: rec.newKeySid ?? '',
      operationalizedAt: Date.parse(rec.operationalizedAt ?? '') || now,
      drainEndsAt,
      now,
      recheckMs: this.#d.recheckMs,
      expiryMs: this.#d.consumers.expiryMs,
    });
    const patch: Partial<RotationRecord> = d.pickup ? { consumers: { ...d.pickup, at: new Date(now).toISOString() } } : {};
    if (d.kind === 'wait') return { ready: false as const, retryAt: d.until, reason: d.reason, patch };
    return { ready: true as const, ...(d.pickup ? { detail: d.detail } : {}), patch };
  }
}
