import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../errors.ts';

/**
 * Every error leaves as `{error: {code, message, requestId}}` with a 4xx for anything the client
 * can fix. Unexpected errors are logged and answered with a generic 500 that never echoes
 * internals (which might name a path or a credential).
 */
export const errorsPlugin = fp(async (app: FastifyInstance) => {
  app.setErrorHandler((err: FastifyError | HttpError, req, reply) => {
    const requestId = req.id;
    if (err instanceof HttpError) {
      return reply.status(err.statusCode).send({ ...err.extra, error: { code: err.code, message: err.message, requestId } });
    }
    if (err.validation) {
      const message = `${err.validationContext ?? 'request'}${err.message.replace(/^(body|querystring|params|headers)/, '')}`;
      return reply.status(400).send({ error: { code: 'invalid_request', message, requestId } });
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const code = FASTIFY_CODES[err.code] ?? 'bad_request';
      return reply.status(status).send({ error: { code, message: err.message, requestId } });
    }
    req.log.error({ err: { message: err.message, code: err.code } }, 'unhandled error');
    return reply.status(500).send({ error: { code: 'internal', message: 'internal error; see the server log for this request id', requestId } });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: req.id } });
  });
});

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_VALIDATION: 'invalid_request',
};
