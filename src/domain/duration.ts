/**
 * ISO 8601 durations for rotation policies (`P90D`, `P30D`, `P1W`, `PT12H`, `P1DT6H`). Pure.
 *
 * A policy's interval is elapsed time, not calendar arithmetic: `P1D` is exactly 24 hours, even
 * across a DST change. An auditor's "every 30 days" is counted in elapsed days, and an interval that
 * stretched to 25 hours on the night clocks go back would let a key outlive its policy by an hour.
 * Local time matters only for *when* a rotation may start (windows), never for how long a key may
 * live.
 *
 * Calendar months and years (`P1M`, `P1Y`) are refused rather than defined: a month is 28 to 31
 * days, so `P1M` after January 31 has no single answer, and any fixed choice (30 days? 31?) is a
 * silent surprise to someone — a "monthly" HIPAA policy that meant 30 days would overshoot by a day
 * if `P1M` meant 31, and an annual one would drift with leap years. The message says what to write
 * instead. Fractions (`P1.5D`) are refused too: write the smaller unit (`PT36H`).
 */

export const SECOND_MS = 1_000;
export const MINUTE_MS = 60 * SECOND_MS;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;
export const WEEK_MS = 7 * DAY_MS;

export type DurationResult = { ok: true; ms: number } | { ok: false; message: string };

// Weeks alone (ISO 8601 does not combine W with other units), or days and/or a time part.
const WEEKS = /^P(\d+)W$/;
const DAYS_TIME = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

/**
 * Parse an ISO 8601 duration into milliseconds, or say what is wrong with it (the caller prefixes
 * the field's name). Only exact units: weeks, days, hours, minutes, seconds.
 */
export function parseDuration(text: unknown): DurationResult {
  if (typeof text !== 'string') return { ok: false, message: `must be an ISO 8601 duration string such as P90D (got ${typeof text})` };
  const s = text.trim();
  const weeks = WEEKS.exec(s);
  if (weeks) return sized(Number(weeks[1]) * WEEK_MS, text);
  const m = DAYS_TIME.exec(s);
  if (m && s !== 'P' && !s.endsWith('T')) {
    const [, d, h, min, sec] = m;
    const ms = Number(d ?? 0) * DAY_MS + Number(h ?? 0) * HOUR_MS + Number(min ?? 0) * MINUTE_MS + Number(sec ?? 0) * SECOND_MS;
    return sized(ms, text);
  }
  return { ok: false, message: explainBadDuration(s, text) };
}

function sized(ms: number, text: string): DurationResult {
  if (!Number.isSafeInteger(ms)) return { ok: false, message: `"${text}" is too large` };
  return { ok: true, ms };
}

/** A message that names the mistake people actually make, so the fix is obvious from the 400. */
function explainBadDuration(s: string, text: string): string {
  if (/^P[^T]*[YM]/.test(s)) {
    return `"${text}" uses calendar months or years, which have no fixed length (a month is 28 to 31 days): write days instead, e.g. P30D or P365D`;
  }
  if (/[.,]\d/.test(s)) return `"${text}" has a fraction: write a whole number of a smaller unit instead, e.g. PT36H rather than P1.5D`;
  if (s.startsWith('-')) return `"${text}" is negative`;
  if (/^p/.test(s) || /[a-z]/.test(s)) return `"${text}" is not an ISO 8601 duration: units are upper case, e.g. P90D, PT12H`;
  if (/W/.test(s)) return `"${text}" combines weeks with other units: write days instead, e.g. P10D rather than P1W3D`;
  return `"${text}" is not an ISO 8601 duration: expected e.g. P90D, P1W, PT12H or P1DT6H`;
}

/** The shortest readable ISO form of a duration, for messages and API answers (`P90D`, `PT36H`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return 'PT0S';
  if (ms % DAY_MS === 0) return `P${ms / DAY_MS}D`;
  let rest = ms;
  const d = Math.floor(rest / DAY_MS);
  rest -= d * DAY_MS;
  const h = Math.floor(rest / HOUR_MS);
  rest -= h * HOUR_MS;
  const m = Math.floor(rest / MINUTE_MS);
  rest -= m * MINUTE_MS;
  const s = Math.floor(rest / SECOND_MS);
  return `P${d ? `${d}D` : ''}T${h ? `${h}H` : ''}${m ? `${m}M` : ''}${s ? `${s}S` : ''}`;
}
