import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { FieldsError, HttpError } from '../errors.ts';
import { validationMessage, type AjvError } from '../validation-errors.ts';

/**
 * Every error leaves as `{error: {code, message, requestId}}` with a 4xx for anything the client
 * can fix. Unexpected errors are logged and answered with a generic 500 that never echoes
 * internals (which might name a path or a credential). A path the app serves, asked with another
 * method, is a 405 with `Allow`; only a path it does not serve at all is a 404.
 */
export const errorsPlugin = fp(async (app: FastifyInstance) => {
  const routes = new RouteMethods();
  app.addHook('onRoute', (route) => routes.add(route.url, route.method));
  app.setErrorHandler((err: FastifyError | HttpError, req, reply) => sendError(err, req, reply));

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = routes.allowedFor(path);
    if (allowed.length && !allowed.includes(req.method)) {
      reply.header('allow', allowed.join(', '));
      return reply.status(405).send({ error: { code: 'method_not_allowed', message: `${req.method} is not allowed on ${safePath(req.url)}; allowed: ${allowed.join(', ')}`, requestId: req.id } });
    }
    return reply.status(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${safePath(req.url)}`, requestId: req.id } });
  });
});

/**
 * Which methods each registered path accepts, to tell a wrong method (405) from an unknown path
 * (404): Fastify's router only says that nothing matched. Catch-all routes (CORS's `OPTIONS *`)
 * match every path and are left out, or every unknown path would be a 405.
 */
class RouteMethods {
  readonly #routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];

  add(url: string, method: string | string[]): void {
    if (url === '*' || url === '/*') return;
    const source = url
      .split('/')
      .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    const methods = (Array.isArray(method) ? method : [method]).map((m) => m.toUpperCase());
    // Fastify answers HEAD for every GET route.
    if (methods.includes('GET')) methods.push('HEAD');
    const existing = this.#routes.find((r) => r.pattern.source === `^${source}$`);
    if (existing) for (const m of methods) existing.methods.add(m);
    else this.#routes.push({ pattern: new RegExp(`^${source}$`), methods: new Set(methods) });
  }

  allowedFor(path: string): string[] {
    const allowed = new Set<string>();
    for (const r of this.#routes) if (r.pattern.test(path)) for (const m of r.methods) allowed.add(m);
    return [...allowed].sort();
  }
}

export function sendError(err: FastifyError | HttpError | Error, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const requestId = req.id;
  if (err instanceof FieldsError) {
    return reply.status(err.statusCode).send({ ...err.extra, error: { code: err.code, message: err.message, requestId, fields: err.fields } });
  }
  if (err instanceof HttpError) {
    return reply.status(err.statusCode).send({ ...err.extra, error: { code: err.code, message: err.message, requestId } });
  }
  const e = err as FastifyError;
  if (e.validation) {
    const context = e.validationContext ?? 'request';
    const message = validationMessage(context, e.validation as AjvError[], routeSchema(req, context), requestPart(req, context));
    return reply.status(400).send({ error: { code: 'invalid_request', message: message.slice(0, 500), requestId } });
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = FASTIFY_CODES[e.code] ?? (status === 404 ? 'not_found' : status === 429 ? 'rate_limited' : 'bad_request');
    return reply.status(status).send({ error: { code, message: (e.message || 'bad request').slice(0, 500), requestId } });
  }
  req.log.error({ err: { message: e.message, code: e.code } }, 'unhandled error');
  return reply.status(500).send({ error: { code: 'internal', message: 'internal error; see the server log for this request id', requestId } });
}

/** Fastify's `frameworkErrors`: a malformed URL or an over-long parameter, before any route runs. */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  sendError(err, req, reply);
}

/** Node's `clientError` (a request too malformed to parse): the same body shape, written to the socket. */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, text, code] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'timeout'] : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'headers_too_large'] : [400, 'Bad Request', 'malformed_request'];
  const body = JSON.stringify({ error: { code, message: status === 400 ? 'the request could not be parsed as HTTP' : text } });
  if (socket.writable) socket.write(`HTTP/1.1 ${status} ${text}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  socket.destroy(err);
}

/** The route's schema for one part of the request (what a validation error's schemaPath points into). */
function routeSchema(req: FastifyRequest, context: string): unknown {
  const schema = req.routeOptions?.schema as Record<string, unknown> | undefined;
  return context === 'querystring' ? (schema?.querystring ?? schema?.query) : schema?.[context];
}

function requestPart(req: FastifyRequest, context: string): unknown {
  return context === 'body' ? req.body : context === 'querystring' ? req.query : context === 'params' ? req.params : context === 'headers' ? req.headers : undefined;
}

/** The path as the client sent it, trimmed for an error message (never the query: it may carry anything). */
function safePath(url: string): string {
  const path = url.split('?')[0] ?? '';
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_TYPE: 'unsupported_media_type',
  FST_ERR_BAD_URL: 'bad_url',
  FST_ERR_MAX_PARAM_LENGTH: 'param_too_long',
  FST_ERR_VALIDATION: 'invalid_request',
};
