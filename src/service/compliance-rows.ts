import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { encodeRow, ROW_FORMAT, rowValues } from '../domain/compliance-row.ts';
import { accountFromJson } from '../state/accounts.ts';
import { ComplianceRowStore } from '../state/compliance-rows.ts';
import type { Redis } from 'ioredis';
import { scannedFromJson } from '../state/compliance.ts';
import type { CredentialRepository } from '../state/credentials.ts';
import { isoTime } from '../state/iso.ts';
import type { PolicyRepository } from '../state/policies.ts';
import { credentialFacts } from './compliance.ts';
import { entryOf } from './fleet.ts';
import { runPeriodically, type Periodic } from './periodic.ts';

/**
 * Renders the compliance rows that state/compliance-rows.ts stores: on a write (its subaccount
 * marked dirty, picked up within a poll), after a policy edit (every row, in the background, a
 * bounded chunk at a time, resuming where it stopped), and for a reader that found a row stale.
 * One renderer at a time across all processes drains the dirty set and walks (a lock); a reader
 * renders what it needs itself. Storing is conditional on the subaccount's generation, so two
 * renders racing, or a render racing a write, never leave a row older than its inputs current.
 */

export interface ComplianceRowsDeps {
  store: ComplianceRowStore;
  credentials: Pick<CredentialRepository, 'getMany'>;
  policies: Pick<PolicyRepository, 'catalog' | 'version'>;
}

/** The rows of the Redis under `prefix`, rendered from these repositories. */
export function complianceRowsOn(redis: Redis, prefix: string, deps: Omit<ComplianceRowsDeps, 'store'>): ComplianceRows {
  return new ComplianceRows({ store: new ComplianceRowStore(redis, prefix), ...deps });
}

export class ComplianceRows {
  readonly #d: ComplianceRowsDeps;

  constructor(deps: ComplianceRowsDeps) {
    this.#d = deps;
  }

  get store(): ComplianceRowStore {
    return this.#d.store;
  }

  /**
   * Render and store the rows of these subaccounts' credentials; returns each row's stored text
   * (stamp first) by credential id (as of the inputs read, whether or not a write since kept it from being stored).
   */
  async render(sids: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (sids.length === 0) return out;
    // The version before the catalog: a catalog newer than the version stamps a row as older than
    // it is (rendered again), never the other way round.
    const version = await this.#d.policies.version();
    const catalog = await this.#d.policies.catalog();
    const inp = await this.#d.store.inputs(sids);
    const ids = inp.ids.flat();
    const creds = await this.#d.credentials.getMany(ids);
    const byId = new Map(ids.map((id, i) => [id, creds[i]]));
    const groups = sids.map((sid, i) => {
      const account = inp.accounts[i] ? accountFromJson(sid, inp.accounts[i]!) : undefined;
      const scanned = inp.facts[i] ? scannedFromJson(sid, inp.facts[i]!) : undefined;
      const status = account?.status ?? scanned?.status ?? 'active';
      const scannedAt = scanned ? isoTime(scanned.scannedAtMs) : null;
      const gen = inp.gens[i] ?? null;
      const stamp = `${version}:${gen ?? ''}`;
      const rows: Array<{ id: string; text: string }> = [];
      for (const id of inp.ids[i]!) {
        const c = byId.get(id);
        if (!c) continue;
        const text = encodeRow(stamp, rowValues(credentialFacts(entryOf(c, account, catalog), scanned), status, scannedAt));
        out.set(id, text);
        rows.push({ id, text });
      }
      return { sid, gen, rows };
    });
    await this.#d.store.store(groups);
    return out;
  }

  /**
   * One round of background work, under the renderers' lock (false when another process holds it):
   * the dirty subaccounts, then, when the policies changed since every row was rendered, the next
   * chunks of the whole fleet. At most `maxChunks` of `chunk` subaccounts each, so a round is short.
   */
  async drainOnce(opts: { chunk?: number; maxChunks?: number; lockMs?: number } = {}): Promise<{ locked: boolean; rendered: number; walked: number; idle: boolean }> {
    const chunk = opts.chunk ?? 200;
    const maxChunks = opts.maxChunks ?? 20;
    const s = this.#d.store;
    const [dirty, policiesVersion, rendered] = await Promise.all([s.dirtyCount(), this.#d.policies.version(), s.renderedVersion()]);
    // Every row is rendered again after a policy edit, and once after an upgrade that changed the
    // stored layout: until then a reader renders the rows it meets in another layout itself.
    const version = `${policiesVersion}/${ROW_FORMAT}`;
    if (dirty === 0 && rendered === version) return { locked: false, rendered: 0, walked: 0, idle: true };
    const token = randomUUID();
    if (!(await s.lock(token, opts.lockMs ?? 30_000))) return { locked: false, rendered: 0, walked: 0, idle: false };
    let renderedSids = 0;
    let walked = 0;
    try {
      for (let n = 0; n < maxChunks; n++) {
        const sids = await s.dirty(chunk);
        if (sids.length === 0) break;
        await this.render(sids);
        renderedSids += sids.length;
      }
      if (rendered !== version) {
        const cursor = await s.walkCursor();
        let after = cursor?.version === version ? cursor.after : '';
        for (let n = 0; n < maxChunks; n++) {
          const ids = await s.idsAfter(after, chunk * 2);
          if (ids.length === 0) {
            await s.setRenderedVersion(version);
            break;
          }
          const sids = [...new Set(ids.map((id) => id.slice(0, id.indexOf('/'))))];
          await this.render(sids);
          walked += sids.length;
          // Past every credential of the last subaccount rendered (names never hold \xff).
          after = `${sids.at(-1)}/\xff`;
          await s.setWalkCursor(version, after);
        }
      }
    } finally {
      await s.unlock(token).catch(() => undefined);
    }
    return { locked: true, rendered: renderedSids, walked, idle: false };
  }
}

/**
 * Renders in the background in this process: every `pollMs` a round of drainOnce, and at once
 * again while a round found more to do. Failures (Redis away) are logged once a minute at most.
 */
export function startComplianceRows(rows: ComplianceRows, opts: { log: Logger; pollMs?: number }): Periodic {
  let stopped = false;
  let warnedAt = -Infinity;
  const pollMs = opts.pollMs ?? 250;
  const loop = runPeriodically(
    async () => {
      for (;;) {
        const r = await rows.drainOnce();
        if (stopped || r.idle || !r.locked || (r.rendered === 0 && r.walked === 0)) return;
      }
    },
    {
      firstMs: pollMs,
      everyMs: pollMs,
      onError(err) {
        if (Date.now() - warnedAt < 60_000) return;
        warnedAt = Date.now();
        opts.log.warn({ err: { message: err.message } }, 'compliance rows could not be rendered (pages render them on demand meanwhile)');
      },
    },
  );
  return {
    async stop() {
      stopped = true;
      await loop.stop();
    },
  };
}
