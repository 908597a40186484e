import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Policy } from '../../domain/policy.ts';
import type { PolicyRepository } from '../../state/policies.ts';
import type { FleetAdmin } from '../../service/fleet-admin.ts';
import { FieldsError, HttpError } from '../errors.ts';
import { errorResponses, NoQuery, PoliciesReply, PolicyBody, PolicyDeleteReply, PolicyNameParams, PolicyViewT } from '../schemas.ts';

export interface PolicyRoutesDeps {
  policies: Pick<PolicyRepository, 'list' | 'get' | 'isBuiltIn' | 'overrideCounts'>;
  admin: FleetAdmin;
}

/** Named rotation policies: anyone may read them, an admin writes them (every change audited). */
export const policyRoutes: FastifyPluginAsyncTypebox<PolicyRoutesDeps> = async (app, { policies, admin }) => {
  const view = async (list: readonly Policy[]) => {
    const counts = await policies.overrideCounts(list.map((p) => p.name));
    return list.map((p, i) => ({ ...p, builtIn: policies.isBuiltIn(p.name), overrides: counts[i] ?? 0 }));
  };

  app.get(
    '/v1/policies',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Every policy in force (built-in ones included), default first',
        tags: ['policies'],
        querystring: NoQuery,
        response: { 200: PoliciesReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async () => ({ items: await view(await policies.list()) }),
  );

  app.get(
    '/v1/policies/:name',
    {
      config: { role: 'viewer' },
      schema: { summary: 'One policy', tags: ['policies'], params: PolicyNameParams, querystring: NoQuery, response: { 200: PolicyViewT, ...errorResponses(400, 401, 403, 404, 429) } },
    },
    async (req) => {
      const p = await policies.get(req.params.name);
      if (!p) throw new HttpError(404, 'policy_not_found', `no policy "${req.params.name}"`);
      return (await view([p]))[0]!;
    },
  );

  app.put(
    '/v1/policies/:name',
    {
      config: { role: 'admin', audit: 'policy.put' },
      // The body is checked by checkPolicy, which names every wrong field at once (Ajv stops at the
      // first); the schema documents it.
      attachValidation: true,
      schema: {
        summary: 'Create or replace a policy',
        description:
          'The body is the policy; `name` may be left out (the path names it) and must equal the path when given. ' +
          'Bad input is answered 400 `invalid_policy` with `error.fields` naming every wrong field (unknown time zone, malformed duration, a window with no hours, overlapping ranges…). ' +
          'Answers 201 when the policy is new, 200 when it replaced one (a built-in policy of the same name is replaced until DELETE reverts it). Every credential the policy applies to is re-planned.',
        tags: ['policies'],
        params: PolicyNameParams,
        querystring: NoQuery,
        body: PolicyBody,
        response: { 200: PolicyViewT, 201: PolicyViewT, ...errorResponses(400, 401, 403, 413, 415, 429) },
      },
    },
    async (req, reply) => {
      // attachValidation covers the path and query too: those are refused as on any route.
      if (req.validationError && (req.validationError as { validationContext?: string }).validationContext !== 'body') throw req.validationError;
      const name = req.params.name;
      req.auditTarget = { detail: `policy ${name}` };
      const r = await admin.putPolicy(name, req.body as unknown);
      if (!r.ok) throw new FieldsError('invalid_policy', r.errors);
      req.auditTarget = { detail: `policy ${name} ${r.value.created ? 'created' : 'replaced'}: ${summary(r.value.policy)}` };
      return reply.status(r.value.created ? 201 : 200).send((await view([r.value.policy]))[0]!);
    },
  );

  app.delete(
    '/v1/policies/:name',
    {
      config: { role: 'admin', audit: 'policy.delete' },
      schema: {
        summary: 'Delete a policy (a built-in one reverts to its definition)',
        description:
          'Refused with 409 `policy_in_use` while an account or credential override names the policy, naming them (clear them with PATCH first). ' +
          'A built-in policy (default, hipaa) is not removed but reverts to its built-in definition, so overrides may keep naming it. 404 when no policy of that name is stored.',
        tags: ['policies'],
        params: PolicyNameParams,
        querystring: NoQuery,
        response: { 200: PolicyDeleteReply, ...errorResponses(400, 401, 403, 404, 409, 429) },
      },
    },
    async (req) => {
      const name = req.params.name;
      req.auditTarget = { detail: `policy ${name}` };
      const r = await admin.deletePolicy(name);
      if (r.result === 'absent') {
        const builtIn = policies.isBuiltIn(name);
        throw new HttpError(404, 'policy_not_found', builtIn ? `policy "${name}" is built in and already has its built-in definition` : `no policy "${name}"`);
      }
      if (r.result === 'in use') {
        const named = r.users.map((u) => (u.includes('/') ? `credential ${u}` : `account ${u}`)).join(', ');
        req.auditTarget = { detail: `policy ${name}: refused, named by ${r.count} overrides` };
        throw new HttpError(409, 'policy_in_use', `policy "${name}" is named by ${r.count} override${r.count === 1 ? '' : 's'}: ${named}${r.count > r.users.length ? ', …' : ''}; clear them (PATCH with "policy": null) or point them at another policy first`);
      }
      req.auditTarget = { detail: r.revertedTo ? `policy ${name} reverted to its built-in definition` : `policy ${name} deleted` };
      return { name, deleted: true, ...(r.revertedTo ? { revertedTo: (await view([r.revertedTo]))[0]! } : {}) };
    },
  );
};

/** A short, secret-free line for the audit trail. */
function summary(p: Policy): string {
  const parts = [`interval ${p.interval}`];
  if (p.maxKeyAge) parts.push(`maxKeyAge ${p.maxKeyAge}`);
  if (p.labels?.length) parts.push(`labels ${p.labels.join(',')}`);
  if (p.windows?.length) parts.push(`${p.windows.length} window(s)`);
  if (p.blackouts?.length) parts.push(`${p.blackouts.length} blackout(s)`);
  if (p.exclude) parts.push('exclude');
  if (p.autoRotate === false) parts.push('autoRotate false');
  return parts.join(', ');
}
