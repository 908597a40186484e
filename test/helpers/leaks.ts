import { Redis } from 'ioredis';

/**
 * Every value in a Redis server (or in each of several: a cluster's nodes), whatever its type, as text: what a leak scan searches.
 */
export async function dumpRedis(url: string | readonly string[]): Promise<string[]> {
  if (typeof url !== 'string') return (await Promise.all(url.map((u) => dumpRedis(u)))).flat();
  const r = new Redis(url, { maxRetriesPerRequest: 2 });
  const out: string[] = [];
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'COUNT', 500);
      cursor = next;
      for (const key of keys) {
        out.push(key);
        const type = await r.type(key);
        // Appended one by one: spreading a long stream or set into push() overflows the stack.
        const add = (values: Iterable<string>): void => {
          for (const v of values) out.push(v);
        };
        if (type === 'string') out.push((await r.getBuffer(key))?.toString('latin1') ?? '');
        else if (type === 'hash') add(await r.hgetallBuffer(key).then((h) => Object.entries(h).flatMap(([f, v]) => [f, v.toString('latin1')])));
        else if (type === 'list') add((await r.lrangeBuffer(key, '0', '-1')).map((b) => b.toString('latin1')));
        else if (type === 'set') add(await r.smembers(key));
        else if (type === 'zset') add(await r.zrange(key, '0', '-1'));
        else if (type === 'stream') add(((await r.xrange(key, '-', '+')) as Array<[string, string[]]>).flatMap(([, f]) => f));
      }
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
  return out;
}

/** The secrets (by position, never printed) found in any of the haystacks. */
export function findSecrets(secrets: readonly string[], haystacks: readonly string[]): number[] {
  const joined = haystacks.join('\n');
  return secrets.map((s, i) => (s.length >= 8 && joined.includes(s) ? i : -1)).filter((i) => i >= 0);
}
