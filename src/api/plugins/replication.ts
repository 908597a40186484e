import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * With Sentinel, replication is asynchronous: a primary that dies right after answering may take
 * its last writes with it, and the replica promoted in its place never had them. The worker's
 * writes can be lost so (every step re-reads Twilio and the store, and a replica holds a prefix of
 * the primary's writes, so losing the tail is a crash of every process at one instant, which steps
 * already resume from). What cannot be redone is a promise made to a client: the 202 with a
 * rotation's id, an operator's cancel or retry, a policy saved. So each request that changes
 * something (the routes that name an audit action) waits, after the audit entry is written and
 * before the answer leaves, until `replicate` says a replica has everything this connection wrote.
 */
export const replicationPlugin = fp(async (app: FastifyInstance, opts: { replicate: () => Promise<void> }) => {
  app.addHook('onSend', async (req, reply, payload) => {
    if (!req.routeOptions.config?.audit || reply.statusCode >= 500 || reply.statusCode === 429) return payload;
    await opts.replicate();
    return payload;
  });
});
