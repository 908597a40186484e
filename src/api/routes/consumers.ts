import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DEFAULT_CREDENTIAL } from '../../domain/credential.ts';
import { CONSUMER_NAME, describePickup, pickupOf } from '../../domain/consumers.ts';
import { publicRotation } from '../../domain/rotation.ts';
import type { ConsumerRegistry } from '../../state/consumers.ts';
import type { CredentialRepository } from '../../state/credentials.ts';
import type { RotationRepository } from '../../state/rotations.ts';
import type { RotationService } from '../../service/rotations.ts';
import { HttpError } from '../errors.ts';
import { AccountSid, AccountSidParams, ActionBody, CredentialName, errorResponses, IdParams, NoQuery, RotationT } from '../schemas.ts';

export interface ConsumerRoutesDeps {
  consumers: ConsumerRegistry;
  credentials: Pick<CredentialRepository, 'get' | 'forAccount'>;
  repo: Pick<RotationRepository, 'get' | 'inFlightFor'>;
  service: Pick<RotationService, 'forcePromote'>;
  /** Wake a rotation waiting as a delayed job: a consumer just moved to its new key. */
  wakeRotation?: (id: string) => Promise<void>;
  now: () => number;
}

const HeartbeatBody = Type.Object(
  {
    consumer: Type.String({ pattern: CONSUMER_NAME.source, description: 'the application instance: 1–128 letters, digits, "_", ".", ":", "@" or "-" (e.g. billing-api@pod-7f9c)' }),
    accountSid: AccountSid,
    credential: Type.Optional(CredentialName(`the managed credential it uses (default \`${DEFAULT_CREDENTIAL}\`)`)),
    keySid: Type.String({ pattern: '^SK[0-9a-f]{32}$', description: 'the API key SID it sends requests with (never the secret)' }),
  },
  { additionalProperties: false },
);

const HeartbeatReply = Type.Object({
  consumer: Type.String(),
  accountSid: Type.String(),
  credential: Type.String(),
  keySid: Type.String(),
  expiresAt: Type.String({ description: 'when this consumer stops counting unless it reports again (CONSUMER_EXPIRY_SECONDS)' }),
});

const ConsumersReply = Type.Object({
  accountSid: Type.String(),
  credentials: Type.Array(
    Type.Object({
      credential: Type.String(),
      consumers: Type.Array(Type.Object({ consumer: Type.String(), keySid: Type.String(), lastSeen: Type.String(), reportedBy: Type.String({ description: 'the token that sent the last heartbeat' }) })),
      rotation: Type.Union([
        Type.Object({ id: Type.String(), step: Type.String(), newKeySid: Type.Union([Type.String(), Type.Null()]), onNewKey: Type.Integer(), total: Type.Integer(), summary: Type.String({ description: '"k of n consumers on the new key; lagging: …"' }) }),
        Type.Null(),
      ], { description: 'the rotation in flight for this credential, with how many of its consumers report its new key' }),
    }),
  ),
});

/**
 * Consumer pickup tracking (issue 15): applications' heartbeats (role `consumer`, nothing else),
 * who uses which key per credential (viewer), and the operator's force-promote.
 */
export const consumerRoutes: FastifyPluginAsyncTypebox<ConsumerRoutesDeps> = async (app, { consumers, credentials, repo, service, wakeRotation, now }) => {
  app.post(
    '/v1/consumers/heartbeat',
    {
      config: { role: 'consumer' },
      // A heartbeat is a few SIDs: anything near the API's 16 KiB limit is not one.
      bodyLimit: 1024,
      schema: {
        summary: 'An application reports which API key of a managed credential it uses',
        description:
          'For tokens of the `consumer` role only (`npm run mint-token -- <name> consumer`), which may call nothing else. Never send a secret: `keySid` is the key SID. ' +
          'A consumer that stops reporting for CONSUMER_EXPIRY_SECONDS no longer counts. Rate-limited per token (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW). Not audited (it changes no rotation); a heartbeat that moves a consumer to a rotation\'s new key wakes the rotation waiting for it.',
        tags: ['consumers'],
        querystring: NoQuery,
        body: HeartbeatBody,
        response: { 200: HeartbeatReply, ...errorResponses(400, 401, 403, 404, 413, 415, 422, 429) },
      },
    },
    async (req) => {
      const { consumer, accountSid, keySid } = req.body;
      const credential = req.body.credential ?? DEFAULT_CREDENTIAL;
      if (!(await credentials.get({ accountSid, name: credential }))) {
        throw new HttpError(404, 'credential_not_found', `Rotator does not manage credential ${accountSid}/${credential}: check accountSid and credential`);
      }
      const t = now();
      const result = await consumers.report({ consumer, accountSid, credential, keySid, by: req.principal!.name }, t);
      if (result === 'full') throw new HttpError(422, 'too_many_consumers', `subaccount ${accountSid} already has the most consumers allowed reporting; consumer names should name application instances, not requests`);
      if (result.previousKeySid !== keySid) {
        // A consumer moved (or a new one appeared): the rotation waiting for it looks again now.
        const id = await repo.inFlightFor(accountSid, credential);
        const rec = id ? await repo.get(id) : undefined;
        if (rec && rec.step === 'promote' && rec.newKeySid === keySid && rec.status === 'waiting' && wakeRotation) {
          const wake = () => wakeRotation(rec.id).catch((err: Error) => req.log.warn({ rotationId: rec.id, err: { message: err.message } }, 'could not wake the rotation'));
          await wake();
          // A wake that found the job mid-check (about to wait again, not yet delayed) is lost: once
          // more a moment later, rather than leaving it to CONSUMER_GATE_RECHECK_SECONDS.
          setTimeout(() => void wake(), 1000).unref();
        }
      }
      return { consumer, accountSid, credential, keySid, expiresAt: new Date(t + consumers.expiryMs).toISOString() };
    },
  );

  app.get(
    '/v1/accounts/:sid/consumers',
    {
      config: { role: 'viewer' },
      schema: {
        summary: "Who uses which key: each managed credential's live consumers, the key each reports and when it last did",
        tags: ['consumers'],
        params: AccountSidParams,
        querystring: NoQuery,
        response: { 200: ConsumersReply, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (req) => {
      const sid = req.params.sid;
      if (!/^AC[0-9a-f]{32}$/.test(sid)) throw new HttpError(400, 'invalid_request', `sid must be an account SID (AC followed by 32 lowercase hex digits)`);
      const [reports, creds] = await Promise.all([consumers.list(sid, now()), credentials.forAccount(sid)]);
      if (creds.length === 0 && reports.length === 0) throw new HttpError(404, 'account_not_found', `Rotator manages no credential of ${sid}`);
      const names = [...new Set([...creds.map((c) => c.name), ...reports.map((r) => r.credential)])].sort();
      const out = await Promise.all(
        names.map(async (credential) => {
          const mine = reports.filter((r) => r.credential === credential);
          const id = await repo.inFlightFor(sid, credential);
          const rec = id ? await repo.get(id) : undefined;
          const inFlight = rec && rec.newKeySid && (rec.step === 'promote' || rec.step === 'delete-old' || rec.step === 'operationalize') ? rec : undefined;
          const pickup = inFlight ? pickupOf(mine, inFlight.newKeySid!) : undefined;
          return {
            credential,
            consumers: mine.map((r) => ({ consumer: r.consumer, keySid: r.keySid, lastSeen: new Date(r.lastSeen).toISOString(), reportedBy: r.by })),
            rotation: inFlight && pickup ? { id: inFlight.id, step: inFlight.step, newKeySid: inFlight.newKeySid ?? null, onNewKey: pickup.onNewKey, total: pickup.total, summary: describePickup(pickup) } : null,
          };
        }),
      );
      return { accountSid: sid, credentials: out };
    },
  );

  app.post(
    '/v1/rotations/:id/promote',
    {
      config: { role: 'operator', audit: 'rotation.force-promote' },
      schema: {
        summary: 'Force-promote a rotation waiting in promote (its drain, or consumers still on the old key)',
        description:
          'Promote proceeds at once, without waiting for the drain or for lagging consumers: those still reporting the old key will get 401s once delete-old deletes it, unless they re-read the store on a 401 (the client library does). ' +
          'Audited with the consumers lagging at the time. 409 when the rotation is not in promote.',
        tags: ['rotations'],
        params: IdParams,
        querystring: NoQuery,
        body: ActionBody,
        response: { 200: RotationT, ...errorResponses(400, 401, 403, 404, 409, 415, 429) },
      },
    },
    async (req) => {
      const id = req.params.id;
      const rec = await repo.get(id);
      if (!rec) throw new HttpError(404, 'rotation_not_found', `no rotation ${id}`);
      const live = rec.newKeySid ? await consumers.forCredential(rec.accountSid, rec.credential, now()) : [];
      const pickup = pickupOf(live, rec.newKeySid ?? '');
      const lagging = pickup.lagging.map((l) => `${l.consumer} (${l.keySid})`);
      req.auditTarget = { rotationId: id, accountSid: rec.accountSid, credential: rec.credential, detail: `force-promote: ${describePickup(pickup, 50)}` };
      const result = await service.forcePromote(id, lagging, req.principal?.name);
      if (!result) throw new HttpError(404, 'rotation_not_found', `no rotation ${id}`);
      if (!result.ok) throw new HttpError(409, 'action_not_allowed', `force-promote refused: ${result.reason}`, { id });
      return publicRotation(result.record);
    },
  );
};
