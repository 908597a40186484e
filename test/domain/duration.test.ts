import { describe, expect, it } from 'vitest';
import { DAY_MS, formatDuration, HOUR_MS, MINUTE_MS, parseDuration, WEEK_MS } from '../../src/domain/duration.ts';

const ms = (text: string): number => {
  const r = parseDuration(text);
  if (!r.ok) throw new Error(r.message);
  return r.ms;
};
const why = (text: unknown): string => {
  const r = parseDuration(text);
  if (r.ok) throw new Error(`${String(text)} was accepted`);
  return r.message;
};

describe('ISO 8601 durations', () => {
  it('reads the exact units as elapsed time', () => {
    expect(ms('P90D')).toBe(90 * DAY_MS);
    expect(ms('P30D')).toBe(30 * DAY_MS);
    expect(ms('P1W')).toBe(WEEK_MS);
    expect(ms('PT12H')).toBe(12 * HOUR_MS);
    expect(ms('P1DT6H')).toBe(DAY_MS + 6 * HOUR_MS);
    expect(ms('PT90M')).toBe(90 * MINUTE_MS);
    expect(ms('PT1H30M15S')).toBe(HOUR_MS + 30 * MINUTE_MS + 15_000);
  });

  it('refuses calendar months and years, saying what to write instead; PT1M stays one minute', () => {
    expect(why('P1M')).toMatch(/calendar months or years.*28 to 31 days.*P30D/);
    expect(why('P1Y')).toMatch(/calendar months or years/);
    expect(why('P1Y2M10D')).toMatch(/calendar months or years/);
    expect(ms('PT1M')).toBe(MINUTE_MS);
  });

  it('names the mistake in malformed input', () => {
    expect(why('P1.5D')).toMatch(/fraction.*PT36H/);
    expect(why('p90d')).toMatch(/upper case/);
    expect(why('-P1D')).toMatch(/negative/);
    expect(why('P1W3D')).toMatch(/combines weeks/);
    expect(why('90 days')).toMatch(/not an ISO 8601 duration/);
    expect(why('P')).toMatch(/not an ISO 8601 duration/);
    expect(why('PT')).toMatch(/not an ISO 8601 duration/);
    expect(why('P1DT')).toMatch(/not an ISO 8601 duration/);
    expect(why(90)).toMatch(/string.*got number/);
  });

  it('formats back to the shortest form', () => {
    for (const t of ['P90D', 'PT12H', 'P1DT6H', 'PT1H30M15S', 'PT0S']) expect(formatDuration(ms(t))).toBe(t);
    expect(formatDuration(WEEK_MS)).toBe('P7D');
  });
});
