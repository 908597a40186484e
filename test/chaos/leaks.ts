/**
 * `findSecrets` (test/helpers/leaks.ts) searches each secret with `includes`: fine for a test, too
 * slow for a long chaos run (tens of thousands of issued secrets × tens of megabytes of logs and
 * AOF). Twilio's key secrets and auth tokens are 32 letters or digits: every 32-character window of
 * every long enough alphanumeric run is looked up in a set instead. Other secrets (store
 * credentials, the API token) are few and searched directly.
 *
 * Returns the positions of the secrets found, never the secrets.
 */
export function findSecretsFast(secrets: readonly string[], haystacks: readonly string[]): number[] {
  const WIDTH = 32;
  const fixed = new Map<string, number>();
  const other: Array<[string, number]> = [];
  secrets.forEach((s, i) => {
    if (s.length === WIDTH && /^[A-Za-z0-9]+$/.test(s)) fixed.set(s, i);
    else if (s.length >= 8) other.push([s, i]);
  });
  const found = new Set<number>();
  const alnum = /[A-Za-z0-9]{32,}/g;
  for (const text of haystacks) {
    for (const [s, i] of other) if (!found.has(i) && text.includes(s)) found.add(i);
    for (const m of text.matchAll(alnum)) {
      const run = m[0];
      for (let p = 0; p + WIDTH <= run.length; p++) {
        const hit = fixed.get(run.slice(p, p + WIDTH));
        if (hit !== undefined) found.add(hit);
      }
    }
  }
  return [...found].sort((a, b) => a - b);
}
