import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

/**
 * The OpenAPI 3.1 document (GET /docs/json) built from every route's TypeBox schemas, and the
 * Swagger UI (GET /docs). Registered before the routes so it sees them all. Public, like health.
 */
export const docsPlugin = fp(async (app: FastifyInstance, opts: { version: string }) => {
  let transformed: Record<string, unknown> | undefined;
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Rotator API',
        version: opts.version,
        description:
          'Zero-downtime rotation of Twilio API keys. Authenticate with `Authorization: Bearer <token>`: an API token (npm run mint-token) or, when configured, an OIDC JWT. Roles: viewer < operator < admin. Errors are `{"error": {"code", "message", "requestId"}}`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      tags: [
        { name: 'rotations', description: 'Start, follow and steer rotations' },
        { name: 'accounts', description: 'Managed subaccounts' },
        { name: 'credentials', description: 'Managed credentials: the fleet view, another key per application and environment, overrides and pause' },
        { name: 'policies', description: 'Named rotation policies: interval, maximum key age, windows, blackouts, label assignment' },
        { name: 'events', description: 'Live rotation changes' },
        { name: 'audit', description: 'The hash-chained audit trail' },
        { name: 'schedule', description: 'The planner: scheduled rotations, forecast, fleet-wide pause' },
        { name: 'operations', description: 'Health, readiness, metrics' },
      ],
    },
    // Every route with a role needs the bearer token; document it per operation.
    transform: ({ schema, url, route }) => {
      const role = (route.config as { role?: string } | undefined)?.role;
      const s = { ...(schema ?? {}) } as Record<string, unknown>;
      if (role) {
        s.security = [{ bearer: [] }];
        s.description = `${typeof s.description === 'string' ? `${s.description}\n\n` : ''}Requires the **${role}** role.`;
      }
      return { schema: s as never, url };
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    // As for the API (app.ts): TLS is the deployment's choice; the demo serves the UI over plain HTTP.
    transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ''),
    uiConfig: { deepLinking: true },
    // The document is fixed once the app is ready: transform it once and serve that, instead of a
    // deep copy (about 270 KB) and a transform on every request.
    transformSpecificationClone: false,
    // The UI hides its own routes; list the two that are part of the API's contract.
    transformSpecification: (spec) => {
      if (transformed) return transformed;
      const doc = structuredClone(spec) as { paths?: Record<string, unknown> };
      optionalBodies(doc.paths ?? {});
      doc.paths = {
        ...doc.paths,
        '/docs': { get: { summary: 'This API in Swagger UI', tags: ['operations'], responses: { 200: { description: 'HTML page' } } } },
        '/docs/json': { get: { summary: 'This OpenAPI document', tags: ['operations'], responses: { 200: { description: 'OpenAPI 3.1 JSON' } } } },
      };
      transformed = doc;
      return doc;
    },
  });
});

/**
 * @fastify/swagger marks every request body required; one whose schema accepts null (an action's:
 * no body, an empty one or `{}`) is optional.
 */
function optionalBodies(paths: Record<string, unknown>): void {
  for (const ops of Object.values(paths)) {
    for (const op of Object.values(ops as Record<string, { requestBody?: { required?: boolean; content?: Record<string, { schema?: { type?: unknown } }> } }>)) {
      const body = op?.requestBody;
      const type = body?.content?.['application/json']?.schema?.type;
      if (body && Array.isArray(type) && type.includes('null')) body.required = false;
    }
  }
}
