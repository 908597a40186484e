import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiHarness, type ApiHarness } from './support.ts';

describe('GET /docs/json and /docs', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn' });
  });
  afterAll(async () => h?.close());

  it('is a valid OpenAPI 3 document (checked against the official schema)', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('lists every route the app serves, with its methods, role and schemas', async () => {
    const doc = (await h.app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, Record<string, { security?: unknown; description?: string; responses: Record<string, unknown>; parameters?: unknown[]; requestBody?: unknown }>> };
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`)));

    // The app's own routes, from Fastify's route tree (4 columns per level), less HEAD and the UI's assets.
    const served = new Set<string>();
    const prefix: string[] = [];
    for (const line of h.app.printRoutes({ commonPrefix: false }).split('\n')) {
      const m = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
      if (!m) continue;
      const depth = m[1]!.length / 4;
      prefix[depth] = (depth > 0 ? prefix[depth - 1]! : '') + m[2]!;
      for (const method of (m[3] ?? '').split(', ').filter(Boolean)) if (method !== 'HEAD') served.add(`${method} ${prefix[depth]}`);
    }
    const uiAssets = [...served].filter((r) => r.startsWith('GET /docs/') && r !== 'GET /docs/json');
    const routes = [...served].filter((r) => !uiAssets.includes(r));
    expect(routes.length).toBe(49);
    expect(routes.filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !served.has(r))).toEqual([]);

    // Protected operations say so; inputs and outputs are described.
    const start = doc.paths['/v1/rotations']!.post!;
    expect(start.security).toEqual([{ bearer: [] }]);
    expect(start.description).toMatch(/operator/);
    expect(start.requestBody).toBeDefined();
    expect(Object.keys(start.responses)).toEqual(expect.arrayContaining(['202', '400', '401', '403', '409', '422', '429']));
    expect(doc.paths['/v1/audit']!.get!.description).toMatch(/admin/);
    expect(doc.paths['/healthz']!.get!.security).toBeUndefined();
  });

  it('serves the Swagger UI', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/docs' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.body).toMatch(/swagger-ui/i);
    // Its scripts are files of its own (CSP 'self'), and nothing forces HTTPS on a plain-HTTP deployment.
    expect(res.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(res.headers['content-security-policy']).not.toMatch(/upgrade-insecure-requests/);
    for (const src of [...res.body.matchAll(/<script src="([^"]+)"/g)].map((m) => m[1]!)) {
      expect((await h.app.inject({ method: 'GET', url: src })).statusCode, src).toBe(200);
    }
  });
});
