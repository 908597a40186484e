/**
 * UTC offsets of IANA time zones, from the tz database the platform already carries (Intl), with
 * each zone's offset transitions cached. Pure apart from that memo: the answers depend only on the
 * instant asked about.
 *
 * Why not a library: luxon is in node_modules only as cron-parser's dependency (via BullMQ), and a
 * transitive package can change or vanish with any BullMQ release; Node's Intl already knows every
 * zone and its rules. Why a cache: `formatToParts` costs 5–20 µs, and the planner asks for offsets
 * for every credential; a zone changes offset twice a year at most, so each year's transitions are
 * found once (a sample a day, then a bisection to the second) and every later question is a
 * binary search over a few numbers.
 */
import { DAY_MS, SECOND_MS } from './duration.ts';

// Offsets change at most a few times a year, months apart; a daily sample finds each change.
const SAMPLE_MS = DAY_MS;

/** Whether the platform knows this IANA zone name (aliases such as `US/Eastern` included). */
export function isValidTimeZone(zone: string): boolean {
  if (typeof zone !== 'string' || zone.length === 0) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** One stretch of time with a constant UTC offset: local = utc + offsetMs. */
export interface OffsetSegment {
  start: number;
  end: number;
  offsetMs: number;
}

export class ZoneOffsets {
  readonly zone: string;
  readonly #format: Intl.DateTimeFormat;
  /** Years covered, contiguous (UTC years). */
  #firstYear = 0;
  #lastYear = -1;
  #startOffset = 0;
  /** Instants (ms) where the offset changes, ascending, and the offset from each on. */
  #at: number[] = [];
  #offset: number[] = [];
  readonly #byYear = new Map<number, Array<[number, number]>>();

  constructor(zone: string) {
    this.zone = zone;
    this.#format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  }

  /** The offset (ms) of local time from UTC at an instant. */
  offsetAt(ms: number): number {
    const y = new Date(ms).getUTCFullYear();
    this.#cover(y, y);
    return this.#offsetCovered(ms);
  }

  /** The constant-offset stretches that make up [from, to), in order. */
  segments(from: number, to: number): OffsetSegment[] {
    if (!(to > from)) return [];
    this.#cover(new Date(from).getUTCFullYear(), new Date(to).getUTCFullYear());
    const out: OffsetSegment[] = [];
    let i = this.#indexAt(from);
    let start = from;
    for (;;) {
      const offsetMs = i < 0 ? this.#startOffset : (this.#offset[i] as number);
      const next = i + 1 < this.#at.length ? (this.#at[i + 1] as number) : Infinity;
      const end = Math.min(next, to);
      out.push({ start, end, offsetMs });
      if (end >= to) return out;
      start = end;
      i += 1;
    }
  }

  /** Asks Intl (slow): the offset at the start of the second holding `ms`. */
  rawOffset(ms: number): number {
    const t = Math.floor(ms / SECOND_MS) * SECOND_MS;
    let y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    for (const p of this.#format.formatToParts(t)) {
      switch (p.type) {
        case 'year': y = Number(p.value); break;
        case 'month': mo = Number(p.value); break;
        case 'day': d = Number(p.value); break;
        case 'hour': h = Number(p.value); break;
        case 'minute': mi = Number(p.value); break;
        case 'second': s = Number(p.value); break;
        default: break;
      }
    }
    return Date.UTC(y, mo - 1, d, h, mi, s) - t;
  }

  #offsetCovered(ms: number): number {
    const i = this.#indexAt(ms);
    return i < 0 ? this.#startOffset : (this.#offset[i] as number);
  }

  /** Index of the last transition at or before ms, -1 if none. */
  #indexAt(ms: number): number {
    let lo = 0;
    let hi = this.#at.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((this.#at[mid] as number) <= ms) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  #cover(fromYear: number, toYear: number): void {
    if (fromYear >= this.#firstYear && toYear <= this.#lastYear) return;
    const lo = this.#lastYear < this.#firstYear ? fromYear : Math.min(fromYear, this.#firstYear);
    const hi = this.#lastYear < this.#firstYear ? toYear : Math.max(toYear, this.#lastYear);
    for (let y = lo; y <= hi; y++) if (!this.#byYear.has(y)) this.#byYear.set(y, this.#transitionsOf(y));
    this.#firstYear = lo;
    this.#lastYear = hi;
    this.#at = [];
    this.#offset = [];
    for (let y = lo; y <= hi; y++) {
      for (const [at, off] of this.#byYear.get(y) ?? []) {
        this.#at.push(at);
        this.#offset.push(off);
      }
    }
    this.#startOffset = this.rawOffset(Date.UTC(lo, 0, 1));
  }

  /**
   * A year's transitions: sample once a day, bisect each change to the second. A zone that changed
   * offset and back within one day would be missed; none has since 1970.
   */
  #transitionsOf(year: number): Array<[number, number]> {
    const start = Date.UTC(year, 0, 1);
    const end = Date.UTC(year + 1, 0, 1);
    const out: Array<[number, number]> = [];
    let prevT = start - SAMPLE_MS;
    let prev = this.rawOffset(prevT);
    for (let t = start; prevT < end; t = Math.min(t + SAMPLE_MS, end)) {
      const off = this.rawOffset(t);
      if (off !== prev) {
        let lo = prevT / SECOND_MS;
        let hi = t / SECOND_MS;
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (this.rawOffset(mid * SECOND_MS) === prev) lo = mid;
          else hi = mid;
        }
        const at = hi * SECOND_MS;
        if (at >= start && at < end) out.push([at, off]);
      }
      prevT = t;
      prev = off;
      if (t === end) break;
    }
    return out;
  }
}

const zones = new Map<string, ZoneOffsets>();

/** The shared, memoised offsets of a zone (the caller has validated the name). */
export function zoneOffsets(zone: string): ZoneOffsets {
  let z = zones.get(zone);
  if (!z) {
    z = new ZoneOffsets(zone);
    zones.set(zone, z);
  }
  return z;
}

/** The local calendar date (YYYY-MM-DD) of an instant in a zone. */
export function localDate(ms: number, zone: string): string {
  const local = ms + zoneOffsets(zone).offsetAt(ms);
  return new Date(Math.floor(local / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}
