import { spawnSync } from 'node:child_process';
import { cpSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as models from 'kubernetes-models';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';

/**
 * deploy/kubernetes (issue 17, item 4), as `kubectl kustomize` renders each overlay after an
 * operator has copied its secrets.env.example to secrets.env: every object valid against the
 * Kubernetes API's schemas (kubernetes-models), and what the schemas cannot see — names that
 * must meet, probes on the ports Rotator serves them on, the restricted security profile, and a
 * configuration Rotator itself accepts.
 */
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OVERLAYS = ['file-store', 'aws', 'vault'];
const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const haveKubectl = kubectl.status === 0;
if (!haveKubectl) console.log(`skipped: the Kubernetes manifests are not rendered here: kubectl is not installed (${kubectl.error?.message ?? kubectl.stderr})`);

// A copy of the tree, as an operator's checkout would be, with each overlay's secrets.env made
// from its example.
const tree = mkdtempSync(join(tmpdir(), 'rotator-k8s-'));
cpSync(join(repo, 'deploy', 'kubernetes'), tree, { recursive: true, filter: (src) => !src.endsWith('/secrets.env') });
for (const o of OVERLAYS) copyFileSync(join(tree, 'overlays', o, 'secrets.env.example'), join(tree, 'overlays', o, 'secrets.env'));
afterAll(() => rmSync(tree, { recursive: true, force: true }));

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown };
/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML, checked field by field below */
type Any = any;

function render(overlay: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', join(tree, 'overlays', overlay)], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const objs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
  // kustomize folds long base64 values over lines; the API server's decoder (Go's base64) skips
  // the line breaks, the schema's "byte" format does not: join them as the server reads them.
  for (const o of objs) {
    const data = (o as Any).data as Record<string, string> | undefined;
    if (o.kind === 'Secret' && data) for (const k of Object.keys(data)) data[k] = data[k]!.replace(/\s+/g, '');
  }
  return objs;
}

/** The kubernetes-models class of an object: `apps/v1` Deployment → models.apps.v1.Deployment. */
function modelOf(o: Obj): (new (data: unknown) => { validate(): void }) | undefined {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const ns = group === '' ? (models as Any)[version!] : (models as Any)[group!.replace(/\.(\w)/g, (_, c: string) => c.toUpperCase())]?.[version!];
  return ns?.[o.kind];
}

const workloads = (objs: Obj[]) => objs.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet') as Any[];
const byKind = (objs: Obj[], kind: string, name?: string): Any => objs.find((o) => o.kind === kind && (!name || o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)));
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const containerPort = (c: Any, port: string | number): number => (typeof port === 'number' ? port : c.ports.find((p: Any) => p.name === port).containerPort);

describe.skipIf(!haveKubectl).each(OVERLAYS)('the %s overlay', (overlay) => {
  const objs = haveKubectl ? render(overlay) : [];

  it('renders only objects that are valid against the Kubernetes schemas', () => {
    expect(objs.length).toBeGreaterThan(8);
    for (const o of objs) {
      const Model = modelOf(o);
      expect(Model, `${o.apiVersion} ${o.kind} has a schema`).toBeDefined();
      expect(() => new Model!(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('rotator');
    }
    // The schemas refuse a value of the wrong type (they accept unknown fields, as the API server
    // does without strict field validation: the fields that matter are asserted by name below).
    const api = structuredClone(byKind(objs, 'Deployment', 'rotator-api'));
    api.spec.template.spec.containers[0].livenessProbe.httpGet.port = { not: 'a port' };
    expect(() => new (modelOf(api)!)(api).validate()).toThrow();
  });

  it('every name an object refers to is rendered: ConfigMap, Secret (with its keys), volume claim, service account', () => {
    const names = (kind: string) => new Set(objs.filter((o) => o.kind === kind).map((o) => o.metadata.name));
    for (const w of workloads(objs)) {
      const spec = w.spec.template.spec;
      if (spec.serviceAccountName) expect(names('ServiceAccount')).toContain(spec.serviceAccountName);
      for (const v of spec.volumes ?? []) if (v.persistentVolumeClaim) expect(names('PersistentVolumeClaim')).toContain(v.persistentVolumeClaim.claimName);
      for (const c of spec.containers) {
        for (const e of c.envFrom ?? []) {
          if (e.configMapRef) expect(names('ConfigMap'), w.metadata.name).toContain(e.configMapRef.name);
          if (e.secretRef) expect(names('Secret'), w.metadata.name).toContain(e.secretRef.name);
        }
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (!ref) continue;
          const secret = objs.find((o) => o.kind === 'Secret' && o.metadata.name === ref.name) as Any;
          expect(secret, `${w.metadata.name} ${e.name}`).toBeDefined();
          expect(Object.keys(secret.data ?? {})).toContain(ref.key);
        }
      }
    }
  });

  it('the ConfigMap and the Secret make a configuration Rotator starts with, naming only settings it reads', () => {
    const env: Record<string, string> = {};
    const cm = byKind(objs, 'ConfigMap', 'rotator-config');
    Object.assign(env, cm.data);
    const secret = byKind(objs, 'Secret', 'rotator-secrets');
    for (const [k, v] of Object.entries(secret.data as Record<string, string>)) env[k] = Buffer.from(v, 'base64').toString('utf8');
    const cfg = loadConfig(env, { requireTwilio: true });
    expect(cfg.store.kind).toBe(overlay === 'file-store' ? 'file' : overlay);
    expect(cfg.metricsPort).toBe(9464);
    // Each key is a setting src/config.ts (or config-redis.ts) reads, or libuv's thread pool.
    const configSource = ['config.ts', 'config-redis.ts'].map((f) => readFileSync(join(repo, 'src', f), 'utf8')).join('\n');
    for (const key of Object.keys(env)) {
      if (key === 'UV_THREADPOOL_SIZE') continue;
      expect(configSource, key).toContain(`'${key}'`);
    }
    // The Redis component's password reaches Rotator as REDIS_PASSWORD, beside a URL without one.
    if (overlay === 'file-store') {
      expect(env.REDIS_URL).toBe('redis://rotator-redis:6379');
      expect(cfg.redis?.kind === 'url' && cfg.redis.password?.reveal()).toBe(env.REDIS_PASSWORD);
    }
  });

  it('pods run under the restricted profile: non-root, no privilege escalation, no capabilities, read-only root, seccomp, requests and limits', () => {
    for (const w of workloads(objs)) {
      const pod = w.spec.template.spec;
      expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name} selects its own pods`).toBe(true);
      expect(pod.securityContext.runAsNonRoot, w.metadata.name).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(pod.securityContext.seccompProfile.type).toBe('RuntimeDefault');
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(pod.hostNetwork ?? false).toBe(false);
      for (const c of pod.containers) {
        const where = `${w.metadata.name}/${c.name}`;
        expect(c.securityContext, where).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
        expect(c.securityContext.capabilities.add ?? [], where).toEqual([]);
        for (const r of ['cpu', 'memory']) {
          expect(c.resources.requests[r], `${where} requests ${r}`).toBeDefined();
          expect(c.resources.limits[r], `${where} limits ${r}`).toBeDefined();
        }
        expect(c.livenessProbe, where).toBeDefined();
        expect(c.readinessProbe, where).toBeDefined();
      }
    }
    const ns = byKind(objs, 'Namespace');
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('probes and scrape annotations name the ports Rotator serves them on', () => {
    const cm = byKind(objs, 'ConfigMap', 'rotator-config');
    const metricsPort = Number(cm.data.METRICS_PORT);
    const apiPort = Number(cm.data.PORT);
    const api = byKind(objs, 'Deployment', 'rotator-api');
    const worker = byKind(objs, 'Deployment', 'rotator-worker');
    const [a] = api.spec.template.spec.containers;
    const [w] = worker.spec.template.spec.containers;
    expect(a.args).toEqual(['api']);
    expect(w.args).toEqual(['worker']);
    expect([a.livenessProbe.httpGet.path, containerPort(a, a.livenessProbe.httpGet.port)]).toEqual(['/healthz', apiPort]);
    expect([a.readinessProbe.httpGet.path, containerPort(a, a.readinessProbe.httpGet.port)]).toEqual(['/readyz', apiPort]);
    // A worker serves nothing but /metrics and /healthz, on METRICS_PORT (src/ops-server.ts).
    for (const probe of [w.livenessProbe, w.readinessProbe, w.startupProbe]) expect([probe.httpGet.path, containerPort(w, probe.httpGet.port)]).toEqual(['/healthz', metricsPort]);
    for (const d of [api, worker]) {
      expect(d.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(metricsPort), 'prometheus.io/path': '/metrics' });
    }
    const svc = byKind(objs, 'Service', 'rotator-api');
    expect(matches(svc.spec.selector, api.spec.template.metadata.labels)).toBe(true);
    expect(matches(svc.spec.selector, worker.spec.template.metadata.labels)).toBe(false);
    expect(containerPort(a, svc.spec.ports[0].targetPort)).toBe(apiPort);
  });

  it('each workload has a PodDisruptionBudget, and the NetworkPolicies select the pods they guard', () => {
    const pdbs = objs.filter((o) => o.kind === 'PodDisruptionBudget') as Any[];
    for (const w of workloads(objs)) {
      const mine = pdbs.filter((p) => matches(p.spec.selector.matchLabels, w.spec.template.metadata.labels));
      expect(mine, w.metadata.name).toHaveLength(1);
      // A drain can always go on: at most one pod at a time, whatever the replica count.
      expect(mine[0].spec.maxUnavailable).toBe(1);
    }
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy') as Any[];
    for (const w of workloads(objs)) {
      const guarding = policies.filter((p) => matches(p.spec.podSelector.matchLabels, w.spec.template.metadata.labels));
      expect(guarding.length, w.metadata.name).toBeGreaterThan(0);
      expect(guarding.every((p) => p.spec.policyTypes.includes('Ingress') && p.spec.policyTypes.includes('Egress'))).toBe(true);
    }
    const redis = policies.find((p) => p.metadata.name === 'rotator-redis');
    if (overlay === 'file-store') {
      const api = byKind(objs, 'Deployment', 'rotator-api');
      expect(matches(redis.spec.ingress[0].from[0].podSelector.matchLabels, api.spec.template.metadata.labels)).toBe(true);
      // The volume is ReadWriteOnce: one worker at a time, and the API on its node.
      expect(byKind(objs, 'Deployment', 'rotator-worker').spec.strategy.type).toBe('Recreate');
      expect(api.spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe('kubernetes.io/hostname');
    } else {
      expect(redis).toBeUndefined();
    }
  });
});

describe('the overlays on disk', () => {
  it('are the ones tested, each with a secrets.env.example', () => {
    const dirs = readdirSync(join(repo, 'deploy', 'kubernetes', 'overlays')).sort();
    expect(dirs).toEqual([...OVERLAYS].sort());
    for (const o of OVERLAYS) expect(readFileSync(join(repo, 'deploy', 'kubernetes', 'overlays', o, 'secrets.env.example'), 'utf8')).toMatch(/TWILIO_ACCOUNT_SID=/);
  });
});
