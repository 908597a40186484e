/**
 * A stateful Twilio REST emulator speaking the v2010 wire protocol (JSON, form-encoded bodies,
 * HTTP Basic), for tests and the demo. The real `twilio` package reaches it through an
 * httpClient that rewrites `https://api.twilio.com` to this origin.
 *
 * Control endpoints live under `/__emulator/` (no auth; Twilio never uses that prefix).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuthLogEntry, PrincipalType } from './auth.ts';
import { AuthLog, authenticate, claimedAccount, parseBasic } from './auth.ts';
import type { FaultKind, FaultSnapshot, FaultUpdate, InjectedFault } from './faults.ts';
import { Faults } from './faults.ts';
import type { Reply, RouteMatch } from './rest.ts';
import { handleRest, matchRoute, twilioError, unauthorized } from './rest.ts';
import type { AccountRecord, AccountStatus, KeyPolicy, KeyType, KeyView } from './state.ts';
import { TwilioState, keyView } from './state.ts';
import { handleV1, matchV1Route } from './v1.ts';

export type { AuthLogEntry, PrincipalType } from './auth.ts';
export type { FailNextRule, FailRate, FaultKind, FaultMatch, FaultSnapshot, FaultUpdate } from './faults.ts';
export type { AccountStatus, KeyPolicy, KeyType, KeyView } from './state.ts';

export interface TwilioEmulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Subaccounts seeded under the parent, named `Customer 1`, `Customer 2`, … (default 3). */
  subaccounts?: number;
  latencyMs?: number;
  /** Max in-flight REST requests per parent-account tree before 429 (default: no limit). */
  concurrency?: number;
  /** Whether the parent's Main key may act on subaccounts (contested upstream; default true). */
  parentMainKeyOnSubaccounts?: boolean;
  /** PRNG seed for random faults. */
  seed?: number;
  failRate?: FaultUpdate['failRate'];
  /** Ring-buffer size of the auth log (default 200 000). */
  authLogCapacity?: number;
}

export interface SubaccountInfo {
  readonly sid: string;
  readonly friendlyName: string;
  /** Live: reflects `revokeCredential`. */
  readonly authToken: string;
}

export interface ParentInfo {
  readonly accountSid: string;
  /** Live: reflects `revokeCredential`. */
  readonly authToken: string;
  readonly mainKey: { readonly sid: string; readonly secret: string };
}

export interface KeyCredential {
  sid: string;
  secret: string;
}

export interface RevokeResult {
  sid: string;
  /** For an AC: the account's new auth token (the old one now answers 401). */
  authToken?: string;
}

export interface EmulatorStats {
  /** REST requests received (control endpoints excluded). */
  requests: number;
  /** By HTTP status, plus `reset` and `timeout` for requests answered with nothing. */
  byStatus: Record<string, number>;
  /** By route template, e.g. `POST /Accounts/{AccountSid}/Keys.json`. */
  byRoute: Record<string, number>;
  /** Requests refused by the concurrency limit. */
  rejected429: number;
  /** Faults injected by failNext/failRate. */
  faultsInjected: number;
  inFlight: number;
  inFlightPeak: number;
  /** Sum over admitted requests of the time each held a concurrency slot here (arrival to close), ms. */
  busyMs: number;
}

export interface AccountView {
  sid: string;
  friendlyName: string;
  status: AccountStatus;
  ownerAccountSid: string;
  authToken: string;
  /** Accounts v1: a secondary Auth Token exists (created, neither promoted nor deleted). */
  hasSecondaryAuthToken: boolean;
  keys: KeyView[];
  messageCount: number;
}

export interface TwilioEmulator {
  readonly url: string;
  readonly port: number;
  readonly parent: ParentInfo;
  /** Seeded and later-created subaccounts of the parent, in creation order. */
  readonly subaccounts: readonly SubaccountInfo[];
  createSubaccount(friendlyName: string): SubaccountInfo;
  /** Creates a key as if by the API (Standard) or, with type 'main', as if in the Console. */
  seedKey(accountSid: string, friendlyName: string, type?: KeyType, createdAt?: Date, policy?: KeyPolicy): KeyCredential;
  listKeys(accountSid: string): KeyView[];
  /** AC: rotate its auth token (old one → 401). SK: delete the key (→ 401). */
  revokeCredential(sid: string): RevokeResult;
  /** Undoes the last `revokeCredential` of that sid; false when there is nothing to undo. */
  restoreCredential(sid: string): boolean;
  setAccountStatus(sid: string, status: AccountStatus): void;
  /** Refuse (or allow again) the parent's credentials on one subaccount; its own keys keep working. */
  denyParent(accountSid: string, denied: boolean): void;
  account(sid: string): AccountView | undefined;
  setFaults(update: FaultUpdate): FaultSnapshot;
  faults(): FaultSnapshot;
  stats(): EmulatorStats;
  resetStats(): void;
  /**
   * Ends the latency of the requests waiting in it now: they go on at once. With a long latency, a
   * test holds admitted requests for exactly as long as it needs (e.g. until a burst has arrived),
   * instead of guessing a latency that outlasts it. Returns how many were waiting.
   */
  endLatency(): number;
  /** Entries with seq > `since`, oldest first. */
  authLog(since?: number, limit?: number): AuthLogEntry[];
  clearAuthLog(): void;
  /** Every key secret and auth token ever handed out, for leak scans. */
  issuedSecrets(): string[];
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const MAX_BODY = 1 << 20;

export async function startTwilioEmulator(opts: TwilioEmulatorOptions = {}): Promise<TwilioEmulator> {
  const state = new TwilioState();
  const faults = new Faults();
  faults.update({
    latencyMs: opts.latencyMs ?? 0,
    concurrency: opts.concurrency ?? null,
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    ...(opts.failRate !== undefined ? { failRate: opts.failRate } : {}),
  });
  const parentMainKeyOnSubaccounts = opts.parentMainKeyOnSubaccounts ?? true;
  const authLog = new AuthLog(opts.authLogCapacity ?? 200_000);

  const parentAccount = state.createParentAccount('Rotator Demo Parent');
  const mainKey = state.createKey(parentAccount.sid, 'Main', 'main');
  const subaccounts: SubaccountInfo[] = [];
  const subaccountInfo = (a: AccountRecord): SubaccountInfo => ({
    sid: a.sid,
    friendlyName: a.friendlyName,
    get authToken() {
      return a.authToken;
    },
  });
  // Subaccounts created over REST show up in `emulator.subaccounts` too.
  state.onSubaccountCreated = (a) => {
    if (a.ownerAccountSid === parentAccount.sid) subaccounts.push(subaccountInfo(a));
  };
  const seedCount = opts.subaccounts ?? 3;
  for (let i = 1; i <= seedCount; i++) state.createSubaccount(parentAccount.sid, `Customer ${i}`);

  // ---- stats ----
  let stats = freshStats();
  const inFlightByTree = new Map<string, number>();
  const countStatus = (s: number | 'reset' | 'timeout'): void => {
    const k = String(s);
    stats.byStatus[k] = (stats.byStatus[k] ?? 0) + 1;
  };

  // ---- timers that close() must cut short ----
  let closed = false;
  const sleepers = new Map<NodeJS.Timeout, () => void>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        sleepers.delete(t);
        resolve();
      }, ms);
      sleepers.set(t, resolve);
    });
  const held = new Set<NodeJS.Timeout>();

  const send = (res: http.ServerResponse, reply: Reply, extra?: Record<string, string>): void => {
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string | number> = { ...extra };
    if (reply.status === 401) headers['WWW-Authenticate'] = 'Basic realm="Twilio API"';
    if (reply.body === undefined) {
      res.writeHead(reply.status, headers);
      res.end();
      return;
    }
    const payload = JSON.stringify(reply.body);
    headers['Content-Type'] = JSON_TYPE;
    headers['Content-Length'] = Buffer.byteLength(payload);
    res.writeHead(reply.status, headers);
    res.end(payload);
  };

  /** Applies an injected fault; returns the status to record (0 = nothing answered). */
  const inflict = (fault: InjectedFault, req: http.IncomingMessage, res: http.ServerResponse): number => {
    stats.faultsInjected++;
    const kind: FaultKind = fault.kind;
    if (kind === 'reset') {
      countStatus('reset');
      req.socket.destroy();
      return 0;
    }
    if (kind === 'timeout') {
      countStatus('timeout');
      const t = setTimeout(() => {
        held.delete(t);
        req.socket.destroy();
      }, faults.timeoutMs);
      held.add(t);
      res.once('close', () => {
        clearTimeout(t);
        held.delete(t);
      });
      return 0;
    }
    const reply =
      kind === 401
        ? twilioError(401, 20003, 'Authenticate')
        : kind === 429
        ? twilioError(429, 20429, 'Too Many Requests')
        : kind === 503
          ? twilioError(503, 20503, 'Service Unavailable')
          : twilioError(500, 20500, 'Internal Server Error');
    countStatus(reply.status);
    send(res, reply);
    return reply.status;
  };

  const handleRestRequest = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    method: string,
    path: string,
    queryString: string,
  ): Promise<void> => {
    stats.requests++;
    const route: RouteMatch | null = matchRoute(method, path);
    const v1Route = route ? null : matchV1Route(method, path);
    const routeName = route ? route.name : v1Route ? v1Route.name : `${method} (unknown)`;
    stats.byRoute[routeName] = (stats.byRoute[routeName] ?? 0) + 1;
    const authHeader = req.headers.authorization;
    const username = parseBasic(authHeader)?.username ?? '';

    const log = (status: number, principalType: PrincipalType | null, callerAccount: string | null): void => {
      authLog.append({
        at: Date.now(),
        method,
        path,
        principal: username,
        principalType,
        accountSid: route?.accountSid ?? callerAccount,
        status,
      });
    };

    // Twilio counts concurrency against the account tree before doing anything else.
    const claimed = username ? claimedAccount(state, username) : undefined;
    const tree = claimed?.ownerAccountSid;
    const early = authenticate(state, authHeader);
    const earlyType = early.ok ? early.principal.type : early.type;
    if (tree !== undefined) {
      const n = inFlightByTree.get(tree) ?? 0;
      if (n >= faults.concurrency) {
        stats.rejected429++;
        countStatus(429);
        send(res, twilioError(429, 20429, 'Too Many Requests'));
        log(429, earlyType, claimed?.sid ?? null);
        return;
      }
      inFlightByTree.set(tree, n + 1);
    }
    stats.inFlight++;
    if (stats.inFlight > stats.inFlightPeak) stats.inFlightPeak = stats.inFlight;
    const admitted = performance.now();
    res.once('close', () => {
      stats.busyMs += performance.now() - admitted;
      stats.inFlight--;
      if (tree !== undefined) {
        const n = (inFlightByTree.get(tree) ?? 1) - 1;
        if (n <= 0) inFlightByTree.delete(tree);
        else inFlightByTree.set(tree, n);
      }
    });

    let body = '';
    if (method === 'POST' || method === 'PUT') {
      try {
        body = await readBody(req);
      } catch {
        // The client went away or sent too much: nothing sensible to answer.
        req.socket.destroy();
        return;
      }
    }
    if (faults.latencyMs > 0) await sleep(faults.latencyMs);
    if (closed || res.destroyed) return;

    const fault = faults.pick(method, path);
    // Authenticate after the latency so a credential revoked meanwhile is already refused.
    const auth = authenticate(state, authHeader);
    const principalType = auth.ok ? auth.principal.type : auth.type;
    const caller = auth.ok ? auth.principal.account.sid : (claimed?.sid ?? null);
    if (fault && fault.phase === 'before') {
      log(inflict(fault, req, res), principalType, caller);
      return;
    }
    const request = auth.ok ? { method, path, query: new URLSearchParams(queryString), form: new URLSearchParams(body), principal: auth.principal } : undefined;
    const reply = !request
      ? unauthorized()
      : v1Route
        ? handleV1({ state, parentMainKeyOnSubaccounts }, v1Route, request)
        : handleRest({ state, parentMainKeyOnSubaccounts }, route, request);
    if (fault) {
      log(inflict(fault, req, res), principalType, caller);
      return;
    }
    countStatus(reply.status);
    send(res, reply);
    log(reply.status, principalType, caller);
  };

  // ---- programmatic controls (shared by the /__emulator endpoints) ----
  const mustAccount = (sid: string): AccountRecord => {
    const a = state.accounts.get(sid);
    if (!a) throw new ControlError(404, `no account ${sid}`);
    return a;
  };
  const controls = {
    createSubaccount(friendlyName: string): SubaccountInfo {
      const a = state.createSubaccount(parentAccount.sid, friendlyName);
      return subaccountInfo(a);
    },
    seedKey(accountSid: string, friendlyName: string, type: KeyType = 'standard', createdAt?: Date, policy?: KeyPolicy): KeyCredential {
      mustAccount(accountSid);
      if ((type === 'restricted') !== (policy !== undefined)) throw new ControlError(400, 'a restricted key needs a policy, and only a restricted key has one');
      const k = state.createKey(accountSid, friendlyName, type, createdAt, policy);
      return { sid: k.sid, secret: k.secret };
    },
    listKeys(accountSid: string): KeyView[] {
      return state.listKeys(accountSid);
    },
    revokeCredential(sid: string): RevokeResult {
      if (sid.startsWith('AC')) {
        mustAccount(sid);
        return { sid, authToken: state.rotateAuthToken(sid) };
      }
      if (sid.startsWith('SK') && state.keys.has(sid)) {
        state.deleteKey(sid);
        return { sid };
      }
      throw new ControlError(404, `no credential ${sid}`);
    },
    restoreCredential(sid: string): boolean {
      if (sid.startsWith('AC')) return state.restoreAuthToken(sid);
      if (sid.startsWith('SK')) return state.undeleteKey(sid);
      return false;
    },
    setAccountStatus(sid: string, status: AccountStatus): void {
      if (status !== 'active' && status !== 'suspended' && status !== 'closed') {
        throw new ControlError(400, 'status must be active, suspended or closed');
      }
      const a = mustAccount(sid);
      a.status = status;
      a.dateUpdated = new Date();
    },
    denyParent(accountSid: string, denied: boolean): void {
      mustAccount(accountSid).parentDenied = denied;
    },
    account(sid: string): AccountView | undefined {
      const a = state.accounts.get(sid);
      return a ? accountView(a) : undefined;
    },
    setFaults(update: FaultUpdate): FaultSnapshot {
      try {
        faults.update(update);
      } catch (err) {
        throw new ControlError(400, (err as Error).message);
      }
      return faults.snapshot();
    },
    faults: (): FaultSnapshot => faults.snapshot(),
    stats: (): EmulatorStats => ({
      ...stats,
      byStatus: { ...stats.byStatus },
      byRoute: { ...stats.byRoute },
    }),
    resetStats(): void {
      const inFlight = stats.inFlight;
      stats = freshStats();
      stats.inFlight = inFlight;
      stats.inFlightPeak = inFlight;
    },
    endLatency(): number {
      const n = sleepers.size;
      for (const [t, resolve] of sleepers) {
        clearTimeout(t);
        resolve();
      }
      sleepers.clear();
      return n;
    },
    authLog: (since?: number, limit?: number): AuthLogEntry[] => authLog.since(since, limit),
    clearAuthLog: (): void => authLog.clear(),
    issuedSecrets: (): string[] => state.issuedSecrets(),
  };

  const handleControl = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    method: string,
    path: string,
    query: URLSearchParams,
  ): Promise<void> => {
    const ok = (body: unknown, status = 200): void => send(res, { status, body });
    try {
      const json = method === 'POST' ? parseJson(await readBody(req)) : {};
      const str = (name: string): string => {
        const v = json[name];
        if (typeof v !== 'string' || v === '') throw new ControlError(400, `${name} (string) is required`);
        return v;
      };
      const route = `${method} ${path.slice('/__emulator'.length)}`;
      switch (route) {
        case 'GET /state':
          return ok({
            parent: { accountSid: parentAccount.sid, mainKeySid: mainKey.sid },
            faults: faults.snapshot(),
            accounts: [...(parentAccount.tree?.values() ?? [])].map(accountView),
          });
        case 'GET /faults':
          return ok(faults.snapshot());
        case 'POST /faults':
          return ok(controls.setFaults(json as FaultUpdate));
        case 'GET /stats':
          return ok(controls.stats());
        case 'POST /stats/reset':
          controls.resetStats();
          return ok(controls.stats());
        case 'GET /auth-log': {
          const since = Number(query.get('since') ?? 0);
          const limit = Number(query.get('limit') ?? 10_000);
          const entries = authLog.since(Number.isFinite(since) ? since : 0, Number.isFinite(limit) ? limit : 10_000);
          return ok({ entries, lastSeq: authLog.lastSeq });
        }
        case 'GET /secrets':
          return ok({ secrets: state.issuedSecrets() });
        case 'POST /revoke':
          return ok(controls.revokeCredential(str('sid')));
        case 'POST /restore':
          return ok({ restored: controls.restoreCredential(str('sid')) });
        case 'POST /subaccounts': {
          const a = controls.createSubaccount(str('friendlyName'));
          return ok({ sid: a.sid, friendlyName: a.friendlyName, authToken: a.authToken }, 201);
        }
        case 'POST /keys': {
          const type = json['type'] === 'main' ? 'main' : json['type'] === 'restricted' ? 'restricted' : 'standard';
          const policy = type === 'restricted' ? (json['policy'] as KeyPolicy | undefined) : undefined;
          return ok(controls.seedKey(str('accountSid'), typeof json['friendlyName'] === 'string' ? json['friendlyName'] : '', type, undefined, policy), 201);
        }
        case 'GET /keys':
          return ok({ keys: controls.listKeys(query.get('accountSid') ?? '') });
        case 'POST /deny-parent':
          controls.denyParent(str('accountSid'), json['denied'] !== false);
          return ok(controls.account(str('accountSid')));
        case 'POST /account-status':
          controls.setAccountStatus(str('sid'), str('status') as AccountStatus);
          return ok(controls.account(str('sid')));
        default:
          return send(res, { status: 404, body: { error: `unknown emulator endpoint ${method} ${path}` } });
      }
    } catch (err) {
      const status = err instanceof ControlError ? err.status : 500;
      send(res, { status, body: { error: (err as Error).message } });
    }
  };

  const server = http.createServer((req, res) => {
    const method = (req.method ?? 'GET').toUpperCase();
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const queryString = q < 0 ? '' : rawUrl.slice(q + 1);
    const work = path.startsWith('/__emulator/')
      ? handleControl(req, res, method, path, new URLSearchParams(queryString))
      : handleRestRequest(req, res, method, path, queryString);
    work.catch((err: unknown) => {
      // A bug in the emulator must surface in the test that hit it, not crash the process.
      send(res, twilioError(500, 20500, `Emulator error: ${(err as Error).message}`));
    });
  });
  // Longer than Node's client-side keep-alive so the client, not the server, closes idle
  // sockets: avoids ECONNRESET races when a request lands on a socket the server just dropped.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  const parent: ParentInfo = {
    accountSid: parentAccount.sid,
    get authToken() {
      return parentAccount.authToken;
    },
    mainKey: { sid: mainKey.sid, secret: mainKey.secret },
  };

  return {
    url,
    port: address.port,
    parent,
    subaccounts,
    ...controls,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const [t, resolve] of sleepers) {
        clearTimeout(t);
        resolve();
      }
      sleepers.clear();
      for (const t of held) clearTimeout(t);
      held.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await done;
    },
  };

  function accountView(a: AccountRecord): AccountView {
    return {
      sid: a.sid,
      friendlyName: a.friendlyName,
      status: a.status,
      ownerAccountSid: a.ownerAccountSid,
      authToken: a.authToken,
      hasSecondaryAuthToken: a.secondaryAuthToken !== undefined,
      keys: [...a.keys.values()].map(keyView),
      messageCount: a.messages.size,
    };
  }
}

class ControlError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function freshStats(): EmulatorStats {
  return { requests: 0, byStatus: {}, byRoute: {}, rejected429: 0, faultsInjected: 0, inFlight: 0, inFlightPeak: 0, busyMs: 0 };
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('aborted')));
  });
}

function parseJson(text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ControlError(400, 'body is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ControlError(400, 'body must be a JSON object');
  return v as Record<string, unknown>;
}
