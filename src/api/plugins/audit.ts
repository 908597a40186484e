import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ACCOUNT_SID } from '../../domain/rotation.ts';
import type { AuditLog } from '../../state/audit.ts';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Routes that change something name their audit action (`rotation.start`, …). */
    audit?: string;
  }
  interface FastifyRequest {
    /** What the handler acted on, when the request alone does not say (a new rotation's id). */
    auditTarget?: {
      rotationId?: string;
      batchId?: string;
      accountSid?: string;
      credential?: string;
      detail?: string;
      /** Replaces the route's action for this request: a distinct, prominent action (`rotation.start.auth-token`). */
      action?: string;
    };
  }
}

/**
 * Every request to a route that changes something by a known principal is appended to the audit
 * chain — who (principal and role), what (action and target), from where (client address), the
 * request id and the status it was answered with — including refused ones (403/409/4xx).
 * Requests without a principal (no or a bad credential: 401, or the identity provider
 * unreachable) are counted in a metric instead: anyone can send them, and each would grow a
 * stream that is never trimmed on a Redis that does not evict. Requests turned away by the rate
 * limiter are not recorded either. Only validated identifiers are recorded, never raw input,
 * never a token.
 */
export const auditPlugin = fp(async (app: FastifyInstance, opts: { audit: AuditLog; onError?: (err: Error) => void; onUnauthenticated?: (action: string, status: number) => void }) => {
  app.decorateRequest('auditTarget', undefined);
  app.addHook('onSend', async (req, reply, payload) => {
    const action = req.routeOptions.config?.audit ? (req.auditTarget?.action ?? req.routeOptions.config.audit) : undefined;
    if (!action || reply.statusCode === 429) return payload;
    if (!req.principal) {
      opts.onUnauthenticated?.(action, reply.statusCode);
      return payload;
    }
    const params = req.params as { id?: unknown } | undefined;
    const body = req.body as { accountSid?: unknown } | undefined;
    const batchId = req.auditTarget?.batchId;
    // A batch's id is a UUID too: with a batch target, the path's id is not a rotation's.
    const rotationId = req.auditTarget?.rotationId ?? (!batchId && typeof params?.id === 'string' && ID.test(params.id) ? params.id : undefined);
    const accountSid = req.auditTarget?.accountSid ?? (body && typeof body === 'object' && typeof body.accountSid === 'string' && ACCOUNT_SID.test(body.accountSid) ? body.accountSid : undefined);
    try {
      await opts.audit.append({
        kind: 'api',
        actor: req.principal.name,
        role: req.principal.role,
        action,
        ...(rotationId ? { rotationId } : {}),
        ...(batchId ? { batchId } : {}),
        ...(accountSid ? { accountSid } : {}),
        ...(req.auditTarget?.credential ? { credential: req.auditTarget.credential } : {}),
        ...(req.auditTarget?.detail ? { detail: req.auditTarget.detail } : {}),
        ip: req.ip,
        requestId: req.id,
        status: reply.statusCode,
      });
    } catch (err) {
      // The action has happened; failing the answer would only make the client repeat it.
      req.log.error({ err: { message: (err as Error).message } }, 'audit append failed');
      opts.onError?.(err as Error);
    }
    return payload;
  });
});
