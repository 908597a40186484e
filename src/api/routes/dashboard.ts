import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { HttpError } from '../errors.ts';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  integrity: string;
}

/**
 * The dashboard's files: src/dashboard/public (plain ES modules, no build step) and the one
 * library it imports, htm's Preact bundle, read from node_modules and served from here (nothing
 * from another origin). Loaded once at start-up.
 */
export function loadDashboardAssets(): { version: string; assets: Map<string, Asset> } {
  const dir = fileURLToPath(new URL('../../dashboard/public/', import.meta.url));
  const files: Array<[string, Buffer]> = readdirSync(dir)
    .filter((f) => TYPES[extname(f)])
    .sort()
    .map((f) => [f, readFileSync(join(dir, f))]);
  const require = createRequire(import.meta.url);
  // The package exports its browser bundle only under the `browser` condition: found from the package's main (dist/htm.js).
  files.push(['preact-htm.js', readFileSync(join(dirname(require.resolve('htm')), '..', 'preact', 'standalone.module.js'))]);
  const all = createHash('sha256');
  const assets = new Map<string, Asset>();
  for (const [name, body] of files) {
    all.update(name).update(body);
    assets.set(name, { body, type: TYPES[extname(name)]!, integrity: `sha384-${createHash('sha384').update(body).digest('base64')}` });
  }
  return { version: all.digest('hex').slice(0, 16), assets };
}

/** The page: no inline script or style (CSP script-src 'self'), every module with its integrity. */
function indexHtml(version: string, assets: Map<string, Asset>): string {
  const at = (name: string) => `/ui/${version}/${name}`;
  const sri = (name: string) => assets.get(name)!.integrity;
  const modules = [...assets.keys()].filter((n) => n.endsWith('.js') && n !== 'app.js');
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    '<title>Rotator</title>',
    `<link rel="icon" href="${at('icon.svg')}" type="image/svg+xml">`,
    `<link rel="stylesheet" href="${at('app.css')}" integrity="${sri('app.css')}">`,
    ...modules.map((m) => `<link rel="modulepreload" href="${at(m)}" integrity="${sri(m)}">`),
    `<script type="module" src="${at('app.js')}" integrity="${sri('app.js')}"></script>`,
    '</head>',
    '<body>',
    '<div id="app"><noscript>The Rotator dashboard needs JavaScript.</noscript></div>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

const AssetParams = Type.Object({ version: Type.String({ maxLength: 32 }), file: Type.String({ maxLength: 100 }) });

/**
 * GET / (the dashboard, never cached: it names the current assets) and GET /ui/{version}/{file}
 * (cached for a year: the version is a hash of every file, so a new release has new URLs).
 * Helmet's CSP applies unchanged.
 */
export const dashboardRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { version, assets } = loadDashboardAssets();
  const html = indexHtml(version, assets);
  app.get(
    '/',
    { schema: { summary: 'The operator dashboard (HTML; sign in with an API token)', tags: ['dashboard'], response: { 200: { description: 'text/html', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    async (_req, reply) => reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(html),
  );
  app.get(
    '/ui/:version/:file',
    {
      schema: {
        summary: "The dashboard's static files, under a version that is a hash of their content (immutable)",
        tags: ['dashboard'],
        params: AssetParams,
        response: { 200: { description: 'the file', content: { 'text/javascript': { schema: { type: 'string' } } } }, 404: { description: 'no such file in this version' } },
      },
    },
    async (req, reply) => {
      const asset = req.params.version === version ? assets.get(req.params.file) : undefined;
      if (!asset) throw new HttpError(404, 'not_found', 'no such dashboard file (an old page? reload it)');
      return reply.header('cache-control', 'public, max-age=31536000, immutable').type(asset.type).send(asset.body);
    },
  );
};
