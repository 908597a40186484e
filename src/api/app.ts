import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { RotationRepository } from '../state/rotations.ts';
import type { RotationService } from '../service/rotations.ts';
import type { TokenEntry } from './tokens.ts';
import { errorsPlugin } from './plugins/errors.ts';
import { authPlugin } from './plugins/auth.ts';
import { rotationRoutes } from './routes/rotations.ts';
import { healthRoutes, type ReadinessCheck } from './routes/health.ts';

export interface AppDeps {
  repo: RotationRepository;
  service: RotationService;
  tokens: readonly TokenEntry[];
  readiness: Record<string, ReadinessCheck>;
  logger?: Logger | false;
  trustProxy?: boolean | string;
  bodyLimit?: number;
}

/** The HTTP surface, built from its dependencies so tests can `inject()` without a port. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger as FastifyBaseLogger } : { logger: false }),
    trustProxy: deps.trustProxy ?? false,
    bodyLimit: deps.bodyLimit ?? 16 * 1024,
    requestIdHeader: false,
    genReqId: () => crypto.randomUUID(),
    ajv: {
      // Reject unknown fields instead of silently dropping them; coerce query strings only.
      customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // JSON only: a text/plain body is refused with 415 rather than validated as a string.
  app.removeContentTypeParser('text/plain');
  await app.register(errorsPlugin);
  await app.register(authPlugin, { tokens: deps.tokens });
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  await app.register(healthRoutes, { checks: deps.readiness });
  await app.register(rotationRoutes, { repo: deps.repo, service: deps.service });
  return app;
}
