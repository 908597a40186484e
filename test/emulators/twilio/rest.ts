/**
 * The v2010 REST resources the emulator serves: Accounts, Keys, Messages and Balance. Routing is
 * pure (no I/O) so the server can name the route and its target account for stats and the auth
 * log before deciding anything else.
 */
import type { Principal, ResourceKind } from './auth.ts';
import { authorize, permits } from './auth.ts';
import { OrderedIndex, requestedPage } from './paging.ts';
import type { AccountRecord, AccountStatus, TwilioState } from './state.ts';
import { API_PREFIX, accountJson, keyJson, messageJson } from './state.ts';

export interface Reply {
  status: number;
  /** Serialised as JSON; undefined sends an empty body (DELETE → 204). */
  body?: unknown;
}

export interface RouteMatch {
  /** Stable route template for stats, e.g. `POST /Accounts/{AccountSid}/Keys.json`. */
  name: string;
  kind: ResourceKind;
  /** The account named in the path; null for `/Accounts.json` (the caller's own account). */
  accountSid: string | null;
  /** Sid of the item named in the path (SK…, SM…), if any. */
  itemSid: string | null;
  action: Action;
}

type Action =
  | 'accounts.list'
  | 'accounts.create'
  | 'account.fetch'
  | 'account.update'
  | 'keys.list'
  | 'keys.create'
  | 'key.fetch'
  | 'key.update'
  | 'key.delete'
  | 'messages.list'
  | 'messages.create'
  | 'message.fetch'
  | 'message.delete'
  | 'balance.fetch'
  | 'method-not-allowed';

export interface RestContext {
  state: TwilioState;
  parentMainKeyOnSubaccounts: boolean;
}

export interface RestRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  form: URLSearchParams;
  principal: Principal;
}

const SID = '([A-Za-z]{2}[0-9a-fA-F]{32})';
const ACCOUNT_ITEM = new RegExp(`^/Accounts/${SID}\\.json$`);
const ACCOUNT_SUB = new RegExp(`^/Accounts/${SID}/(Keys|Messages|Balance)\\.json$`);
const ACCOUNT_SUB_ITEM = new RegExp(`^/Accounts/${SID}/(Keys|Messages)/${SID}\\.json$`);

const ALLOWED: Record<string, readonly string[]> = {
  accounts: ['GET', 'POST'],
  account: ['GET', 'POST'],
  Keys: ['GET', 'POST'],
  Messages: ['GET', 'POST'],
  Balance: ['GET'],
  Key: ['GET', 'POST', 'DELETE'],
  Message: ['GET', 'DELETE'],
};

export function matchRoute(method: string, fullPath: string): RouteMatch | null {
  if (!fullPath.startsWith(`${API_PREFIX}/`)) return null;
  const path = fullPath.slice(API_PREFIX.length);
  const m = (
    name: string,
    kind: ResourceKind,
    accountSid: string | null,
    itemSid: string | null,
    group: string,
    byMethod: Partial<Record<string, Action>>,
  ): RouteMatch => {
    const action = ALLOWED[group]?.includes(method) ? byMethod[method] : undefined;
    return { name: `${method} ${name}`, kind, accountSid, itemSid, action: action ?? 'method-not-allowed' };
  };
  if (path === '/Accounts.json') {
    return m('/Accounts.json', 'accounts', null, null, 'accounts', { GET: 'accounts.list', POST: 'accounts.create' });
  }
  let r = ACCOUNT_ITEM.exec(path);
  if (r) {
    return m('/Accounts/{Sid}.json', 'accounts', r[1] ?? null, null, 'account', {
      GET: 'account.fetch',
      POST: 'account.update',
    });
  }
  r = ACCOUNT_SUB.exec(path);
  if (r) {
    const sub = r[2] ?? '';
    const accountSid = r[1] ?? null;
    if (sub === 'Keys') {
      return m('/Accounts/{AccountSid}/Keys.json', 'keys', accountSid, null, 'Keys', {
        GET: 'keys.list',
        POST: 'keys.create',
      });
    }
    if (sub === 'Messages') {
      return m('/Accounts/{AccountSid}/Messages.json', 'other', accountSid, null, 'Messages', {
        GET: 'messages.list',
        POST: 'messages.create',
      });
    }
    return m('/Accounts/{AccountSid}/Balance.json', 'other', accountSid, null, 'Balance', { GET: 'balance.fetch' });
  }
  r = ACCOUNT_SUB_ITEM.exec(path);
  if (r) {
    const accountSid = r[1] ?? null;
    const itemSid = r[3] ?? null;
    if (r[2] === 'Keys') {
      return m('/Accounts/{AccountSid}/Keys/{Sid}.json', 'keys', accountSid, itemSid, 'Key', {
        GET: 'key.fetch',
        POST: 'key.update',
        DELETE: 'key.delete',
      });
    }
    return m('/Accounts/{AccountSid}/Messages/{Sid}.json', 'other', accountSid, itemSid, 'Message', {
      GET: 'message.fetch',
      DELETE: 'message.delete',
    });
  }
  return null;
}

/** The Restricted-key permission each v2010 action needs (Twilio's `/twilio/<product>/<resource>/<verb>`). */
const PERMISSIONS: Partial<Record<Action, string>> = {
  'messages.list': '/twilio/messaging/messages/read',
  'message.fetch': '/twilio/messaging/messages/read',
  'messages.create': '/twilio/messaging/messages/create',
  'message.delete': '/twilio/messaging/messages/delete',
  'balance.fetch': '/twilio/usage/balance/read',
};

export function twilioError(status: number, code: number, message: string): Reply {
  return {
    status,
    body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
  };
}

export const unauthorized = (): Reply => twilioError(401, 20003, 'Authenticate');
export const notFound = (path: string): Reply =>
  twilioError(404, 20404, `The requested resource ${path} was not found`);
const invalid = (message: string): Reply => twilioError(400, 20001, message);

/** Answers one authenticated request. */
export function handleRest(ctx: RestContext, route: RouteMatch | null, req: RestRequest): Reply {
  const { state } = ctx;
  if (!route) return notFound(req.path);
  if (route.action === 'method-not-allowed') return twilioError(405, 20004, 'Method not allowed');
  const target = route.accountSid === null ? req.principal.account : state.accounts.get(route.accountSid);
  if (!target) return notFound(req.path);
  // A Restricted key authenticates, and is then refused whatever its policy does not allow (70051).
  if (req.principal.type === 'restricted_key' && target.sid === req.principal.account.sid && !permits(req.principal, state.keys.get(req.principal.sid), PERMISSIONS[route.action] ?? null)) {
    return twilioError(403, 70051, 'Authorization error: the API key is not allowed to make this request (not in its policy)');
  }
  if (!authorize(req.principal, target, route.kind, ctx.parentMainKeyOnSubaccounts)) return unauthorized();
  // A suspended or closed account's resources are out of reach; its Account resource is not,
  // so the owner can still see (and change) its status.
  if (route.kind !== 'accounts' && target.status !== 'active') return unauthorized();

  switch (route.action) {
    case 'accounts.list':
      return listAccounts(req, target);
    case 'accounts.create':
      return createSubaccount(state, req, target);
    case 'account.fetch':
      return { status: 200, body: accountJson(target) };
    case 'account.update':
      return updateAccount(req, target);
    case 'keys.list':
      return listPage(req, 'keys', target.keys, true, [], undefined, (k) => keyJson(k));
    case 'keys.create':
      return createKey(state, req, target);
    case 'key.fetch':
    case 'key.update':
    case 'key.delete': {
      const key = route.itemSid ? target.keys.get(route.itemSid) : undefined;
      if (!key) return notFound(req.path);
      if (route.action === 'key.fetch') return { status: 200, body: keyJson(key) };
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
      return { status: 200, body: keyJson(key) };
    }
    case 'messages.list': {
      const to = req.query.get('To');
      const from = req.query.get('From');
      const filters: [string, string][] = [];
      if (to !== null) filters.push(['To', to]);
      if (from !== null) filters.push(['From', from]);
      const filter =
        to === null && from === null
          ? undefined
          : (msg: { to: string; from: string | null }) => (to === null || msg.to === to) && (from === null || msg.from === from);
      return listPage(req, 'messages', target.messages, false, filters, filter, messageJson);
    }
    case 'messages.create':
      return createMessage(state, req, target);
    case 'message.fetch':
    case 'message.delete': {
      const msg = route.itemSid ? target.messages.get(route.itemSid) : undefined;
      if (!msg) return notFound(req.path);
      if (route.action === 'message.fetch') return { status: 200, body: messageJson(msg) };
      target.messages.remove(msg.sid);
      return { status: 204 };
    }
    case 'balance.fetch':
      return { status: 200, body: { account_sid: target.sid, balance: '20.00', currency: 'USD' } };
  }
}

function listAccounts(req: RestRequest, caller: AccountRecord): Reply {
  const status = req.query.get('Status');
  const friendlyName = req.query.get('FriendlyName');
  if (status !== null && !isStatus(status)) return invalid(`Status must be one of active, suspended, closed`);
  const filters: [string, string][] = [];
  if (friendlyName !== null) filters.push(['FriendlyName', friendlyName]);
  if (status !== null) filters.push(['Status', status]);
  const filter =
    status === null && friendlyName === null
      ? undefined
      : (a: AccountRecord) => (status === null || a.status === status) && (friendlyName === null || a.friendlyName === friendlyName);
  // Twilio lists the caller's own account too (owner_account_sid === sid for a parent);
  // a subaccount sees only itself.
  let index = caller.tree;
  if (!index) {
    index = new OrderedIndex<AccountRecord>();
    index.add(caller);
  }
  return listPage(req, 'accounts', index, true, filters, filter, accountJson);
}

function createSubaccount(state: TwilioState, req: RestRequest, caller: AccountRecord): Reply {
  if (!caller.tree) return twilioError(403, 20403, 'Subaccounts cannot create subaccounts');
  const name = req.form.get('FriendlyName') ?? `SubAccount Created at ${new Date().toUTCString()}`;
  if (name.length > 64) return invalid('FriendlyName must be at most 64 characters long');
  const account = state.createSubaccount(caller.sid, name);
  return { status: 201, body: accountJson(account) };
}

function updateAccount(req: RestRequest, target: AccountRecord): Reply {
  const name = req.form.get('FriendlyName');
  const status = req.form.get('Status');
  if (name !== null && name.length > 64) return invalid('FriendlyName must be at most 64 characters long');
  if (status !== null) {
    if (!isStatus(status)) return invalid('Status must be one of active, suspended, closed');
    if (target.tree && status !== target.status) {
      return invalid('The status of a parent account cannot be changed through the API');
    }
    if (target.status === 'closed' && status !== 'closed') return invalid('A closed account cannot be reopened');
  }
  if (name !== null) target.friendlyName = name;
  if (status !== null) target.status = status as AccountStatus;
  if (name !== null || status !== null) target.dateUpdated = new Date();
  return { status: 200, body: accountJson(target) };
}

function createKey(state: TwilioState, req: RestRequest, target: AccountRecord): Reply {
  const name = req.form.get('FriendlyName') ?? '';
  if (name.length > 64) return invalid('FriendlyName must be at most 64 characters long');
  const key = state.createKey(target.sid, name, 'standard');
  return { status: 201, body: keyJson(key, true) };
}

function createMessage(state: TwilioState, req: RestRequest, target: AccountRecord): Reply {
  const to = req.form.get('To');
  const from = req.form.get('From');
  const service = req.form.get('MessagingServiceSid');
  const body = req.form.get('Body');
  if (!to) return twilioError(400, 21604, "A 'To' phone number is required.");
  if (!from && !service) return twilioError(400, 21603, "A 'From' phone number is required.");
  if (!body && !req.form.get('MediaUrl') && !req.form.get('ContentSid')) {
    return twilioError(400, 21602, 'Message body is required.');
  }
  const msg = state.createMessage(
    target,
    { to, from: from || null, body: body ?? '', messagingServiceSid: service || null },
    req.principal.sid,
  );
  return { status: 201, body: messageJson(msg) };
}

/**
 * A v2010 list page: `{<key>: [...], page, page_size, start, end, uri, first_page_uri,
 * next_page_uri, previous_page_uri}` with relative URIs that twilio-node resolves against its
 * base URL and follows until next_page_uri is null.
 */
function listPage<T extends { sid: string }>(
  req: RestRequest,
  key: string,
  index: OrderedIndex<T>,
  ascending: boolean,
  filters: [string, string][],
  filter: ((item: T) => boolean) | undefined,
  toJson: (item: T) => unknown,
): Reply {
  const p = requestedPage(req.query, ({ size, page, token }) => index.page({ size, ascending, token, offset: token ? 0 : page * size, filter }));
  if (typeof p === 'string') return invalid(p);
  const uri = (page: number, tok?: string): string => {
    const q = new URLSearchParams(filters);
    q.set('PageSize', String(p.size));
    q.set('Page', String(page));
    if (tok) q.set('PageToken', tok);
    return `${req.path}?${q.toString()}`;
  };
  const start = p.page * p.size;
  return {
    status: 200,
    body: {
      [key]: p.items.map(toJson),
      end: p.items.length > 0 ? start + p.items.length - 1 : start,
      first_page_uri: uri(0),
      next_page_uri: p.next ? uri(p.next.page, p.next.token) : null,
      page: p.page,
      page_size: p.size,
      previous_page_uri: p.previous ? uri(p.previous.page, p.previous.token) : null,
      start,
      uri: uri(p.page, p.token),
    },
  };
}

function isStatus(s: string): s is AccountStatus {
  return s === 'active' || s === 'suspended' || s === 'closed';
}
