import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

/**
 * deploy/Dockerfile and docker-compose.yml (issue 17, item 3), read as Docker would: there is no
 * Docker engine here, so CI runs the build stage's script itself (deploy/build-release.sh, in
 * .ci/run) and test/release/compiled.test.ts runs the runtime stage's file set, its HEALTHCHECK
 * command included. This file checks that the two stages are the ones those tests exercise, and
 * that compose starts the image as the image expects.
 */
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dockerfile = readFileSync(join(repo, 'deploy', 'Dockerfile'), 'utf8');

interface Instruction {
  op: string;
  args: string;
}
/** Instructions per stage (continuation lines joined, comments dropped). */
function stages(text: string): Map<string, Instruction[]> {
  const joined = text.replace(/\\\n/g, ' ').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const out = new Map<string, Instruction[]>();
  let current: Instruction[] = [];
  out.set('(global)', current);
  for (const line of joined) {
    const [op, ...rest] = line.trim().split(/\s+/);
    const args = rest.join(' ');
    if (op === 'FROM') out.set(/ AS (\S+)$/i.exec(args)![1]!, (current = []));
    current.push({ op: op!, args });
  }
  return out;
}

const s = stages(dockerfile);
const build = s.get('build')!;
const runtime = s.get('runtime')!;
const arg = (name: string) => s.get('(global)')!.find((i) => i.op === 'ARG' && i.args.startsWith(`${name}=`))!.args.split('=')[1]!;

describe('deploy/Dockerfile', () => {
  it('builds with the script CI runs, on a pinned current-LTS slim base shared by both stages', () => {
    expect(build.filter((i) => i.op === 'RUN').map((i) => i.args)).toEqual(['npm ci', 'bash deploy/build-release.sh /release']);
    const base = arg('NODE_IMAGE');
    expect(base).toMatch(/^node:(22|24)\.\d+\.\d+-(bookworm|trixie)-slim$/);
    expect(build[0]!.args).toBe('${NODE_IMAGE} AS build');
    expect(runtime[0]!.args).toBe('${NODE_IMAGE} AS runtime');
    // Every file the build stage copies exists; what build-release.sh reads is among them.
    for (const c of build.filter((i) => i.op === 'COPY')) {
      const sources = c.args.split(/\s+/).slice(0, -1);
      for (const src of sources) expect(existsSync(join(repo, src)), src).toBe(true);
    }
    const copied = build.filter((i) => i.op === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts', 'src', 'workers', 'providers', 'deploy/build-release.sh']) expect(copied, needed).toContain(needed);
  });

  it('runs the release alone, as a numeric non-root user, under tini, with a health check, OCI labels and a data volume', () => {
    const copies = runtime.filter((i) => i.op === 'COPY');
    expect(copies.map((i) => i.args)).toEqual(['--from=build /release /app']);
    const user = runtime.filter((i) => i.op === 'USER').at(-1)!.args;
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    const entry = JSON.parse(runtime.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
    expect(entry).toEqual(['/usr/bin/tini', '--', 'node', 'dist/src/main.js']);
    expect(runtime.find((i) => i.op === 'RUN')!.args).toContain('apt-get install -y --no-install-recommends tini');
    expect(JSON.parse(runtime.find((i) => i.op === 'CMD')!.args)).toEqual(['api']);
    expect(runtime.find((i) => i.op === 'HEALTHCHECK')!.args).toMatch(/^--interval=\S+ --timeout=\S+ --start-period=\S+ --retries=\d+ CMD \[/);
    const labels = runtime.filter((i) => i.op === 'LABEL').map((i) => i.args).join(' ');
    for (const key of ['title', 'description', 'licenses', 'version', 'revision', 'created', 'source', 'base.name']) expect(labels).toContain(`org.opencontainers.image.${key}=`);
    expect(runtime.find((i) => i.op === 'VOLUME')!.args).toBe('["/data"]');
    const env = runtime.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
    expect(env).toContain('DATA_DIR=/data');
    expect(env).toContain('NODE_ENV=production');
  });

  it('the HEALTHCHECK is the command the compiled-release test runs against a live service', () => {
    const hc = runtime.find((i) => i.op === 'HEALTHCHECK')!.args;
    const cmd = JSON.parse(hc.slice(hc.indexOf('CMD ') + 4)) as string[];
    const test = readFileSync(join(repo, 'test', 'release', 'compiled.test.ts'), 'utf8');
    expect(test).toContain('healthcheckCommand()');
    expect(cmd[0]).toBe('node');
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(repo, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Record<string, unknown>> };

  it('builds deploy/Dockerfile and starts its api and worker commands, read-only, with DATA_DIR on a volume', () => {
    for (const [name, mode] of [['api', 'api'], ['worker', 'worker']] as const) {
      const svc = compose.services[name]! as Record<string, unknown> & { build: { dockerfile: string; context: string }; environment: Record<string, string> };
      expect(svc.build).toEqual({ context: '.', dockerfile: 'deploy/Dockerfile' });
      // The image's ENTRYPOINT is node dist/src/main.js: the command is the mode alone.
      expect(svc.command).toEqual([mode]);
      expect(svc.read_only).toBe(true);
      expect(svc.volumes).toContain('rotator-data:/data');
      expect(svc.tmpfs).toContain('/tmp');
      expect(svc.init).toBeUndefined();
      expect(svc.environment.REDIS_URL).toBe('redis://redis:6379');
      expect(svc.environment.METRICS_PORT).toBe('9464');
    }
    expect(compose.services.worker!.ports).toContain('127.0.0.1:9464:9464');
  });
});
