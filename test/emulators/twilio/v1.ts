/**
 * The v1 resources of Twilio's other hosts that the emulator serves on the same origin (their paths
 * do not collide): IAM v1 Keys (`iam.twilio.com/v1/Keys`, Standard and Restricted keys, `meta`
 * paging with absolute URLs) and Accounts v1 Auth Tokens (`accounts.twilio.com/v1/AuthTokens/…`).
 *
 * Who may call them follows the public docs: `/v1/Keys` needs the Auth Token or a Main key (of the
 * account, or of its parent); the Auth Token endpoints act on the authenticated account itself and
 * need its Auth Token or a Main key.
 */
import type { Principal } from './auth.ts';
import { authorize } from './auth.ts';
import type { Reply, RestContext } from './rest.ts';
import { notFound, twilioError, unauthorized } from './rest.ts';
import type { KeyPolicy, KeyRecord } from './state.ts';
import { requestedPage, type PageSlice } from './paging.ts';
import { iamKeyJson } from './state.ts';

export interface V1Route {
  name: string;
  action: 'keys.list' | 'keys.create' | 'key.fetch' | 'key.update' | 'key.delete' | 'secondary.create' | 'secondary.delete' | 'promote' | 'method-not-allowed';
  itemSid: string | null;
}

export interface V1Request {
  method: string;
  path: string;
  query: URLSearchParams;
  form: URLSearchParams;
  principal: Principal;
}

const KEY_ITEM = /^\/v1\/Keys\/(SK[0-9a-fA-F]{32})$/;
const IAM_ORIGIN = 'https://iam.twilio.com';
const ACCOUNTS_ORIGIN = 'https://accounts.twilio.com';

export function matchV1Route(method: string, path: string): V1Route | null {
  const pick = (name: string, byMethod: Partial<Record<string, V1Route['action']>>, itemSid: string | null = null): V1Route => ({
    name: `${method} ${name}`,
    action: byMethod[method] ?? 'method-not-allowed',
    itemSid,
  });
  if (path === '/v1/Keys') return pick('/v1/Keys', { GET: 'keys.list', POST: 'keys.create' });
  const item = KEY_ITEM.exec(path);
  if (item) return pick('/v1/Keys/{Sid}', { GET: 'key.fetch', POST: 'key.update', DELETE: 'key.delete' }, item[1] ?? null);
  if (path === '/v1/AuthTokens/Secondary') return pick('/v1/AuthTokens/Secondary', { POST: 'secondary.create', DELETE: 'secondary.delete' });
  if (path === '/v1/AuthTokens/Promote') return pick('/v1/AuthTokens/Promote', { POST: 'promote' });
  return null;
}

const invalid = (message: string): Reply => twilioError(400, 20001, message);
const missing = (name: string): Reply => invalid(`Missing required parameter ${name} in the post body`);

/** Standard and Restricted keys may not manage keys or tokens (Twilio: 401 20003). */
const mayManage = (p: Principal): boolean => p.type === 'auth_token' || p.type === 'main_key';

export function handleV1(ctx: RestContext, route: V1Route | null, req: V1Request): Reply {
  const { state } = ctx;
  if (!route) return notFound(req.path);
  if (route.action === 'method-not-allowed') return twilioError(405, 20004, 'Method not allowed');
  if (!mayManage(req.principal)) return unauthorized();
  const own = req.principal.account;

  switch (route.action) {
    case 'secondary.create': {
      const secondary = state.createSecondaryAuthToken(own);
      return { status: 201, body: secondaryJson(own.sid, secondary) };
    }
    case 'secondary.delete':
      if (!own.secondaryAuthToken) return notFound(req.path);
      own.secondaryAuthToken = undefined;
      return { status: 204 };
    case 'promote': {
      const created = own.secondaryAuthToken?.dateCreated;
      const token = state.promoteSecondaryAuthToken(own);
      if (!token || !created) return twilioError(400, 20001, 'No secondary Auth Token to promote: create one first');
      return {
        status: 200,
        body: { account_sid: own.sid, auth_token: token, date_created: created.toISOString(), date_updated: new Date().toISOString(), url: `${ACCOUNTS_ORIGIN}/v1/AuthTokens` },
      };
    }
    case 'keys.list':
    case 'keys.create': {
      const params = route.action === 'keys.list' ? req.query : req.form;
      const accountSid = params.get('AccountSid');
      if (!accountSid) return route.action === 'keys.list' ? invalid('Missing required parameter AccountSid') : missing('AccountSid');
      const target = state.accounts.get(accountSid);
      if (!target) return notFound(req.path);
      if (!authorize(req.principal, target, 'keys', ctx.parentMainKeyOnSubaccounts)) return unauthorized();
      if (target.status !== 'active') return unauthorized();
      if (route.action === 'keys.list') return listKeys(req, accountSid, target.keys.page.bind(target.keys));
      const name = req.form.get('FriendlyName') ?? '';
      if (name.length > 64) return invalid('FriendlyName must be at most 64 characters long');
      const keyType = req.form.get('KeyType');
      if (keyType !== null && keyType !== 'restricted') return invalid('KeyType must be restricted (omit it for a Standard key)');
      let policy: KeyPolicy | undefined;
      if (keyType === 'restricted') {
        const parsed = parsePolicy(req.form.get('Policy'));
        if (typeof parsed === 'string') return invalid(parsed);
        policy = parsed;
      } else if (req.form.get('Policy') !== null) {
        return invalid('Policy is allowed only with KeyType=restricted');
      }
      const key = state.createKey(target.sid, name, keyType === 'restricted' ? 'restricted' : 'standard', undefined, policy);
      return { status: 201, body: iamKeyJson(key, true) };
    }
    case 'key.fetch':
    case 'key.update':
    case 'key.delete': {
      const key = route.itemSid ? state.keys.get(route.itemSid) : undefined;
      const target = key && !key.deleted ? state.accounts.get(key.accountSid) : undefined;
      if (!key || !target) return notFound(req.path);
      if (!authorize(req.principal, target, 'keys', ctx.parentMainKeyOnSubaccounts)) return notFound(req.path);
      if (route.action === 'key.fetch') return { status: 200, body: iamKeyJson(key) };
      if (route.action === 'key.delete') {
        state.deleteKey(key.sid);
        return { status: 204 };
      }
      const name = req.form.get('FriendlyName');
      if (name !== null) {
        if (name.length > 64) return invalid('FriendlyName must be at most 64 characters long');
        key.friendlyName = name;
        key.dateUpdated = new Date();
      }
      return { status: 200, body: iamKeyJson(key) };
    }
  }
}

/** Policy is a JSON object `{allow: [permission, …]}` with at least one permission. */
function parsePolicy(raw: string | null): KeyPolicy | string {
  if (raw === null) return 'Policy is required when KeyType is restricted';
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return 'Policy must be a JSON object';
  }
  const allow = (value as { allow?: unknown } | null)?.allow;
  if (!Array.isArray(allow) || allow.length === 0 || !allow.every((p) => typeof p === 'string' && p.startsWith('/twilio/'))) {
    return 'Policy.allow must be a non-empty array of permissions such as /twilio/messaging/messages/read';
  }
  return { allow: allow as string[] };
}

type Pager = (opts: { size: number; ascending: boolean; token?: string | undefined }) => PageSlice<KeyRecord>;

/**
 * An IAM v1 list page: `{keys: [...], meta: {page, page_size, first_page_url, previous_page_url,
 * url, next_page_url, key}}` with absolute URLs, which twilio-node follows as given.
 */
function listKeys(req: V1Request, accountSid: string, read: Pager): Reply {
  const p = requestedPage(req.query, ({ size, token }) => read({ size, ascending: true, token }));
  if (typeof p === 'string') return invalid(p);
  const url = (n: number, tok?: string): string => {
    const q = new URLSearchParams({ AccountSid: accountSid, PageSize: String(p.size), Page: String(n) });
    if (tok) q.set('PageToken', tok);
    return `${IAM_ORIGIN}/v1/Keys?${q.toString()}`;
  };
  return {
    status: 200,
    body: {
      keys: p.items.map((k) => {
        const { policy: _policy, ...rest } = iamKeyJson(k);
        return { ...rest, flags: k.type === 'restricted' ? ['restricted'] : [] };
      }),
      meta: {
        page: p.page,
        page_size: p.size,
        first_page_url: url(0),
        previous_page_url: p.previous ? url(p.previous.page, p.previous.token) : null,
        url: url(p.page, p.token),
        next_page_url: p.next ? url(p.next.page, p.next.token) : null,
        key: 'keys',
      },
    },
  };
}

function secondaryJson(accountSid: string, s: { token: string; dateCreated: Date }): Record<string, unknown> {
  const at = s.dateCreated.toISOString();
  return { account_sid: accountSid, date_created: at, date_updated: at, secondary_auth_token: s.token, url: `${ACCOUNTS_ORIGIN}/v1/AuthTokens/Secondary` };
}
