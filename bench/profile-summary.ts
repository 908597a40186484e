import { readFileSync } from 'node:fs';

/** Self time of a .cpuprofile by function and by package (node_modules/<pkg>, or our own dirs). */
interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const prof = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFn = new Map<string, number>();
const byPkg = new Map<string, number>();
for (const n of prof.nodes) {
  const t = self.get(n.id) ?? 0;
  const url = n.callFrame.url;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  const pkg = m ? m[1]! : url.startsWith('node:') ? 'node:' + url.slice(5).split('/')[0] : url.includes('/work/') ? url.replace(/^.*\/main\//, '').split('/').slice(0, 2).join('/') : (n.callFrame.functionName || url || '(native)');
  byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + t);
  const key = `${n.callFrame.functionName || '(anon)'} ${url.replace(/^.*node_modules\//, '').replace(/^.*\/main\//, '')}:${n.callFrame.lineNumber}`;
  byFn.set(key, (byFn.get(key) ?? 0) + t);
}
const top = (m: Map<string, number>, k: number) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, t]) => `${((t / total) * 100).toFixed(1).padStart(5)}%  ${(t / 1000).toFixed(0).padStart(6)} ms  ${name}`).join('\n');
console.log(`total ${(total / 1000).toFixed(0)} ms\n--- by package ---\n${top(byPkg, 30)}\n--- by function ---\n${top(byFn, 40)}`);
