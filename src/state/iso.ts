/**
 * `new Date(ms).toISOString()` for the epoch-ms timestamps records are stored with. List pages
 * convert several per record and `toISOString` was their largest single cost; this formats the
 * time of day from tables and remembers each day's date prefix.
 */
const DAY_MS = 86_400_000;
/** 0000-01-01 to 9999-12-31: outside it toISOString writes a six-digit signed year. */
const MIN_MS = -62_167_219_200_000;
const MAX_MS = 253_402_300_800_000;
const TWO = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const THREE = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));
const days = new Map<number, string>();

export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < MIN_MS || ms >= MAX_MS) return new Date(ms).toISOString();
  const day = Math.floor(ms / DAY_MS);
  let date = days.get(day);
  if (date === undefined) {
    if (days.size >= 4096) days.clear();
    date = new Date(day * DAY_MS).toISOString().slice(0, 11);
    days.set(day, date);
  }
  let t = ms - day * DAY_MS;
  const milli = t % 1000;
  t = (t - milli) / 1000;
  const sec = t % 60;
  t = (t - sec) / 60;
  const min = t % 60;
  return `${date}${TWO[(t - min) / 60]}:${TWO[min]}:${TWO[sec]}.${THREE[milli]}Z`;
}
