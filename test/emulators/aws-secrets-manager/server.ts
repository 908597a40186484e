/**
 * An AWS Secrets Manager emulator speaking the real wire protocol (awsJson1_1: `POST /`,
 * `X-Amz-Target: secretsmanager.<Operation>`, PascalCase JSON, epoch-second dates, errors as HTTP
 * 400 `{"__type", "Message"}`), so the unmodified AWS SDK talks to it. Staging-label rules follow
 * the API reference: the first version of a secret always gets AWSCURRENT; PutSecretValue without
 * VersionStages moves AWSCURRENT; moving a label that sits on another version needs
 * RemoveFromVersionId; moving AWSCURRENT puts AWSPREVIOUS on the version it left; unlabelled
 * versions are deprecated and kept (up to `maxVersions`), but left out of DescribeSecret and of
 * ListSecretVersionIds without IncludeDeprecated; a ClientRequestToken repeated with the same value
 * (PutSecretValue, CreateSecret) is a no-op. Where moto's server differs, test/contract/stores.test.ts
 * pins the documented behaviour.
 *
 * Requests must carry a SigV4 Authorization header for a configured access key; signatures are
 * verified unless `verifySignatures: false`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';

export interface EmulatorCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** IAM user name shown in AccessDenied messages. */
  userName?: string;
  /** Operations this key may not call ('*' = all). */
  deny?: string[] | '*';
}

export interface AwsSecretsManagerEmulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  /** Default: one key, `test` / `test`. */
  credentials?: EmulatorCredential[];
  /** Check SigV4 signatures, not just the access key id (default true). */
  verifySignatures?: boolean;
  latencyMs?: number;
  /** Versions kept per secret before the oldest deprecated ones are removed (AWS: about 100). */
  maxVersions?: number;
}

export type FailKind = 'ThrottlingException' | 'InternalServiceError' | 'reset';

export interface VersionSnapshot {
  versionId: string;
  stages: string[];
  secretString?: string;
  createdDate: number;
}

export interface SecretSnapshot {
  name: string;
  arn: string;
  tags: Record<string, string>;
  deletedDate?: number;
  /** Oldest first. */
  versions: VersionSnapshot[];
}

export interface RequestLogEntry {
  operation: string;
  accessKeyId?: string;
  status: number | 'reset';
  errorType?: string;
}

export interface AwsSecretsManagerEmulator {
  readonly url: string;
  readonly region: string;
  readonly credentials: readonly EmulatorCredential[];
  close(): Promise<void>;
  /** The next `count` requests fail with this error (after authentication, before any effect). */
  failNext(count: number, kind: FailKind): void;
  /** While down, every request gets HTTP 503 (or a connection reset). */
  setDown(down: boolean, mode?: '503' | 'reset'): void;
  /** AccessDeniedException on every write operation, for every key. */
  denyWrites(deny: boolean): void;
  /** Replace the deny list of one access key ('*' = all operations, [] = none). */
  setDeny(accessKeyId: string, deny: string[] | '*'): void;
  /**
   * Simulates the client process dying: after `writes` more write requests have succeeded, the next
   * write is dropped (or, with `applyLast`, applied but its answer lost) and every request after it
   * fails with a connection reset until heal().
   */
  crashAfterWrites(writes: number, opts?: { applyLast?: boolean }): void;
  /** Whether an armed crash has happened. */
  crashed(): boolean;
  /** Clear every fault: down, failNext, denyWrites, crash. */
  heal(): void;
  snapshot(name: string): SecretSnapshot | undefined;
  secretNames(): string[];
  readonly requests: readonly RequestLogEntry[];
  /** Forget every secret and the request log. */
  reset(): void;
}

const WRITE_OPERATIONS = new Set(['CreateSecret', 'PutSecretValue', 'UpdateSecretVersionStage', 'DeleteSecret', 'RestoreSecret', 'TagResource', 'UntagResource']);
const AWSCURRENT = 'AWSCURRENT';
const AWSPREVIOUS = 'AWSPREVIOUS';
const REQUEST_LOG_LIMIT = 10_000;

interface Version {
  id: string;
  secretString?: string;
  secretBinary?: string;
  stages: Set<string>;
  created: number;
}

interface SecretRecord {
  name: string;
  arn: string;
  description?: string;
  tags: Map<string, string>;
  created: number;
  lastChanged: number;
  deletedDate?: number;
  versions: Map<string, Version>;
}

class ApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

export async function startAwsSecretsManagerEmulator(opts: AwsSecretsManagerEmulatorOptions = {}): Promise<AwsSecretsManagerEmulator> {
  const region = opts.region ?? 'us-east-1';
  const accountId = opts.accountId ?? '123456789012';
  const verifySignatures = opts.verifySignatures ?? true;
  const maxVersions = opts.maxVersions ?? 100;
  const credentials = new Map((opts.credentials ?? [{ accessKeyId: 'test', secretAccessKey: 'test' }]).map((c) => [c.accessKeyId, { ...c }]));
  const secrets = new Map<string, SecretRecord>();
  const requests: RequestLogEntry[] = [];

  let down: false | '503' | 'reset' = false;
  let writesDenied = false;
  const failQueue: FailKind[] = [];
  let crash: { remaining: number; applyLast: boolean; fired: boolean } | undefined;

  const now = (): number => Date.now() / 1000;

  function log(entry: RequestLogEntry): void {
    requests.push(entry);
    if (requests.length > REQUEST_LOG_LIMIT) requests.splice(0, requests.length - REQUEST_LOG_LIMIT);
  }

  function find(secretId: unknown): SecretRecord {
    if (typeof secretId !== 'string' || secretId.length === 0) throw new ApiError('InvalidParameterException', 'You must provide a SecretId.');
    const byName = secrets.get(secretId);
    if (byName) return byName;
    for (const s of secrets.values()) {
      // Full ARN, or a partial ARN without the random six-character suffix.
      if (s.arn === secretId || s.arn.slice(0, -7) === secretId) return s;
    }
    throw new ApiError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
  }

  function live(secretId: unknown): SecretRecord {
    const s = find(secretId);
    if (s.deletedDate !== undefined) throw new ApiError('InvalidRequestException', "You can't perform this operation on the secret because it was marked for deletion.");
    return s;
  }

  function holder(s: SecretRecord, label: string): Version | undefined {
    for (const v of s.versions.values()) if (v.stages.has(label)) return v;
    return undefined;
  }

  /** Attaches `label` to `target`, taking it from whichever version had it; AWSCURRENT drags AWSPREVIOUS along. */
  function attach(s: SecretRecord, label: string, target: Version): void {
    const from = holder(s, label);
    if (from === target) return;
    from?.stages.delete(label);
    target.stages.add(label);
    if (label === AWSCURRENT && from) {
      holder(s, AWSPREVIOUS)?.stages.delete(AWSPREVIOUS);
      from.stages.add(AWSPREVIOUS);
    }
  }

  function prune(s: SecretRecord): void {
    if (s.versions.size <= maxVersions) return;
    for (const v of [...s.versions.values()]) {
      if (s.versions.size <= maxVersions) break;
      if (v.stages.size === 0) s.versions.delete(v.id);
    }
  }

  function token(input: Json): string {
    const t = input.ClientRequestToken;
    if (t === undefined) return randomUUID();
    if (typeof t !== 'string' || t.length < 32 || t.length > 64) {
      throw new ApiError(
        'ValidationException',
        `1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length ${typeof t === 'string' && t.length > 64 ? 'less than or equal to 64' : 'greater than or equal to 32'}`,
      );
    }
    return t;
  }

  function value(input: Json): { secretString?: string; secretBinary?: string } | undefined {
    const str = input.SecretString;
    const bin = input.SecretBinary;
    if (str !== undefined && bin !== undefined) throw new ApiError('InvalidParameterException', 'You can\'t specify both a binary secret value and a string secret value in the same secret.');
    if (typeof str === 'string') return { secretString: str };
    if (typeof bin === 'string') return { secretBinary: bin };
    return undefined;
  }

  function tagList(s: SecretRecord): Json[] {
    return [...s.tags].map(([Key, Value]) => ({ Key, Value }));
  }

  function stagesMap(s: SecretRecord): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const v of s.versions.values()) if (v.stages.size > 0) out[v.id] = [...v.stages];
    return out;
  }

  function page<T>(items: T[], input: Json): { items: T[]; next?: string } {
    const max = typeof input.MaxResults === 'number' ? input.MaxResults : 100;
    if (max < 1 || max > 100) throw new ApiError('InvalidParameterException', 'MaxResults must be between 1 and 100.');
    let start = 0;
    if (typeof input.NextToken === 'string') {
      start = Number(Buffer.from(input.NextToken, 'base64url').toString('utf8'));
      if (!Number.isInteger(start) || start < 0) throw new ApiError('InvalidNextTokenException', 'The NextToken value is invalid.');
    }
    const slice = items.slice(start, start + max);
    const nextStart = start + slice.length;
    return nextStart < items.length ? { items: slice, next: Buffer.from(String(nextStart)).toString('base64url') } : { items: slice };
  }

  const operations: Record<string, (input: Json) => Json> = {
    CreateSecret(input) {
      const name = input.Name;
      if (typeof name !== 'string' || name.length === 0 || name.length > 512) throw new ApiError('InvalidParameterException', 'You must provide a valid Name.');
      const existing = secrets.get(name);
      if (existing?.deletedDate !== undefined) {
        throw new ApiError('InvalidRequestException', "You can't create this secret because a secret with this name is already scheduled for deletion.");
      }
      if (existing) {
        // A retried create (same ClientRequestToken, same value) is ignored; another value under that token fails (API reference, CreateSecret ClientRequestToken).
        const v = value(input);
        const retried = v && typeof input.ClientRequestToken === 'string' ? existing.versions.get(input.ClientRequestToken) : undefined;
        if (retried && v) {
          if (retried.secretString === v.secretString && retried.secretBinary === v.secretBinary) return { ARN: existing.arn, Name: existing.name, VersionId: retried.id };
          throw new ApiError('ResourceExistsException', `You can't use ClientRequestToken ${retried.id} because that value is already in use for a version of secret ${existing.arn}.`);
        }
        throw new ApiError('ResourceExistsException', `The operation failed because the secret ${name} already exists.`);
      }
      const t = now();
      const s: SecretRecord = {
        name,
        arn: `arn:aws:secretsmanager:${region}:${accountId}:secret:${name}-${randomBytes(4).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6)}`,
        tags: new Map(),
        created: t,
        lastChanged: t,
        versions: new Map(),
      };
      if (typeof input.Description === 'string') s.description = input.Description;
      for (const tag of (input.Tags as Json[] | undefined) ?? []) {
        if (typeof tag.Key === 'string' && typeof tag.Value === 'string') s.tags.set(tag.Key, tag.Value);
      }
      const v = value(input);
      let versionId: string | undefined;
      if (v) {
        versionId = token(input);
        s.versions.set(versionId, { id: versionId, ...v, stages: new Set([AWSCURRENT]), created: t });
      }
      secrets.set(name, s);
      return { ARN: s.arn, Name: s.name, ...(versionId ? { VersionId: versionId } : {}) };
    },

    DescribeSecret(input) {
      const s = find(input.SecretId);
      return {
        ARN: s.arn,
        Name: s.name,
        ...(s.description !== undefined ? { Description: s.description } : {}),
        RotationEnabled: false,
        LastChangedDate: s.lastChanged,
        ...(s.tags.size > 0 ? { Tags: tagList(s) } : {}),
        VersionIdsToStages: stagesMap(s),
        CreatedDate: s.created,
        ...(s.deletedDate !== undefined ? { DeletedDate: s.deletedDate } : {}),
      };
    },

    GetSecretValue(input) {
      const s = live(input.SecretId);
      const byId = typeof input.VersionId === 'string' ? input.VersionId : undefined;
      const byStage = typeof input.VersionStage === 'string' ? input.VersionStage : byId ? undefined : AWSCURRENT;
      let v: Version | undefined;
      if (byId) {
        v = s.versions.get(byId);
        if (!v) throw new ApiError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${byId}`);
        if (byStage && !v.stages.has(byStage)) throw new ApiError('InvalidParameterException', `The version ${byId} doesn't have the staging label ${byStage}.`);
      } else if (byStage) {
        v = holder(s, byStage);
        if (!v) throw new ApiError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for staging label: ${byStage}`);
      }
      if (!v || (v.secretString === undefined && v.secretBinary === undefined)) {
        throw new ApiError('ResourceNotFoundException', "Secrets Manager can't find the specified secret value.");
      }
      return {
        ARN: s.arn,
        Name: s.name,
        VersionId: v.id,
        ...(v.secretString !== undefined ? { SecretString: v.secretString } : { SecretBinary: v.secretBinary }),
        VersionStages: [...v.stages],
        CreatedDate: v.created,
      };
    },

    PutSecretValue(input) {
      const s = live(input.SecretId);
      const id = token(input);
      const v = value(input);
      if (!v) throw new ApiError('InvalidRequestException', 'You must provide either SecretString or SecretBinary.');
      const existing = s.versions.get(id);
      if (existing) {
        if (existing.secretString !== v.secretString || existing.secretBinary !== v.secretBinary) {
          throw new ApiError('ResourceExistsException', `You can't use ClientRequestToken ${id} because that value is already in use for a version of secret ${s.arn}.`);
        }
        // Same token, same value: succeeds and changes nothing.
        return { ARN: s.arn, Name: s.name, VersionId: id, VersionStages: [...existing.stages] };
      }
      const requested = Array.isArray(input.VersionStages) ? (input.VersionStages as unknown[]).filter((x): x is string => typeof x === 'string') : undefined;
      if (requested && requested.length > 20) throw new ApiError('InvalidParameterException', 'A version can have at most 20 staging labels.');
      const labels = new Set(requested ?? [AWSCURRENT]);
      if (s.versions.size === 0) labels.add(AWSCURRENT);
      const version: Version = { id, ...v, stages: new Set(), created: now() };
      s.versions.set(id, version);
      for (const label of labels) attach(s, label, version);
      s.lastChanged = now();
      prune(s);
      return { ARN: s.arn, Name: s.name, VersionId: id, VersionStages: [...version.stages] };
    },

    UpdateSecretVersionStage(input) {
      const s = live(input.SecretId);
      const label = input.VersionStage;
      if (typeof label !== 'string' || label.length === 0) throw new ApiError('InvalidParameterException', 'You must provide a VersionStage.');
      const moveTo = typeof input.MoveToVersionId === 'string' ? input.MoveToVersionId : undefined;
      const removeFrom = typeof input.RemoveFromVersionId === 'string' ? input.RemoveFromVersionId : undefined;
      const current = holder(s, label);
      if (moveTo !== undefined) {
        const target = s.versions.get(moveTo);
        if (!target) throw new ApiError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${moveTo}`);
        if (current && current !== target) {
          if (removeFrom === undefined) {
            throw new ApiError(
              'InvalidParameterException',
              `The parameter RemoveFromVersionId can't be empty. Staging label ${label} is currently attached to version ${current.id}, so you must explicitly reference that version in RemoveFromVersionId.`,
            );
          }
          if (removeFrom !== current.id) {
            throw new ApiError('InvalidParameterException', `When you move staging label ${label}, RemoveFromVersionId must be set to the version that currently has the staging label ${label}.`);
          }
        }
        attach(s, label, target);
      } else {
        if (removeFrom === undefined) throw new ApiError('InvalidParameterException', 'You must specify MoveToVersionId, RemoveFromVersionId, or both.');
        if (!s.versions.has(removeFrom)) throw new ApiError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${removeFrom}`);
        if (current?.id !== removeFrom) throw new ApiError('InvalidParameterException', `The staging label ${label} is not attached to version ${removeFrom}.`);
        if (label === AWSCURRENT) throw new ApiError('InvalidParameterException', `You can't remove the staging label ${AWSCURRENT}; move it to another version instead.`);
        current.stages.delete(label);
      }
      s.lastChanged = now();
      prune(s);
      return { ARN: s.arn, Name: s.name };
    },

    ListSecrets(input) {
      const includeDeleted = input.IncludePlannedDeletion === true;
      const all = [...secrets.values()].filter((s) => includeDeleted || s.deletedDate === undefined).sort((a, b) => a.created - b.created || a.name.localeCompare(b.name));
      const { items, next } = page(all, input);
      return {
        SecretList: items.map((s) => ({
          ARN: s.arn,
          Name: s.name,
          ...(s.description !== undefined ? { Description: s.description } : {}),
          LastChangedDate: s.lastChanged,
          ...(s.tags.size > 0 ? { Tags: tagList(s) } : {}),
          SecretVersionsToStages: stagesMap(s),
          CreatedDate: s.created,
          ...(s.deletedDate !== undefined ? { DeletedDate: s.deletedDate } : {}),
        })),
        ...(next ? { NextToken: next } : {}),
      };
    },

    ListSecretVersionIds(input) {
      const s = find(input.SecretId);
      const all = [...s.versions.values()].filter((v) => input.IncludeDeprecated === true || v.stages.size > 0);
      const { items, next } = page(all, input);
      return {
        Versions: items.map((v) => ({ VersionId: v.id, VersionStages: [...v.stages], CreatedDate: v.created })),
        ARN: s.arn,
        Name: s.name,
        ...(next ? { NextToken: next } : {}),
      };
    },

    DeleteSecret(input) {
      const s = find(input.SecretId);
      const force = input.ForceDeleteWithoutRecovery === true;
      if (force && input.RecoveryWindowInDays !== undefined) {
        throw new ApiError('InvalidParameterException', "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.");
      }
      if (force) {
        secrets.delete(s.name);
        return { ARN: s.arn, Name: s.name, DeletionDate: now() };
      }
      if (s.deletedDate !== undefined) throw new ApiError('InvalidRequestException', "You can't perform this operation on the secret because it was marked for deletion.");
      const days = typeof input.RecoveryWindowInDays === 'number' ? input.RecoveryWindowInDays : 30;
      if (days < 7 || days > 30) throw new ApiError('InvalidParameterException', 'RecoveryWindowInDays must be between 7 and 30.');
      s.deletedDate = now() + days * 86_400;
      return { ARN: s.arn, Name: s.name, DeletionDate: s.deletedDate };
    },

    RestoreSecret(input) {
      const s = find(input.SecretId);
      delete s.deletedDate;
      return { ARN: s.arn, Name: s.name };
    },

    TagResource(input) {
      const s = live(input.SecretId);
      for (const tag of (input.Tags as Json[] | undefined) ?? []) {
        if (typeof tag.Key === 'string' && typeof tag.Value === 'string') s.tags.set(tag.Key, tag.Value);
      }
      return {};
    },

    UntagResource(input) {
      const s = live(input.SecretId);
      for (const key of (input.TagKeys as unknown[] | undefined) ?? []) if (typeof key === 'string') s.tags.delete(key);
      return {};
    },
  };

  function send(res: http.ServerResponse, status: number, body: Json): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID(), 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  function sendError(res: http.ServerResponse, e: ApiError): void {
    // The SDK reads `message` or `Message`; Secrets Manager itself answers with `Message`.
    send(res, e.status, { __type: e.type, Message: e.message });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('secretsmanager.') ? target.slice('secretsmanager.'.length) : target;

    if (crash?.fired || down === 'reset') {
      log({ operation, status: 'reset' });
      req.socket.destroy();
      return;
    }
    if (down === '503') {
      log({ operation, status: 503, errorType: 'ServiceUnavailable' });
      sendError(res, new ApiError('ServiceUnavailable', 'Service Unavailable', 503));
      return;
    }
    if (opts.latencyMs) await new Promise((r) => setTimeout(r, opts.latencyMs));

    const fail = (e: ApiError, accessKeyId?: string): void => {
      log({ operation, status: e.status, errorType: e.type, ...(accessKeyId ? { accessKeyId } : {}) });
      sendError(res, e);
    };

    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
      fail(new ApiError('UnknownOperationException', `${req.method} ${req.url} is not a Secrets Manager operation.`, 404));
      return;
    }
    const auth = parseAuthorization(req.headers.authorization);
    if (!auth) {
      fail(new ApiError('MissingAuthenticationTokenException', 'Missing Authentication Token'));
      return;
    }
    const cred = credentials.get(auth.accessKeyId);
    if (!cred) {
      fail(new ApiError('UnrecognizedClientException', 'The security token included in the request is invalid.'), auth.accessKeyId);
      return;
    }
    if (verifySignatures && !signatureMatches(req, body, auth, cred.secretAccessKey)) {
      fail(
        new ApiError(
          'InvalidSignatureException',
          'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
        ),
        auth.accessKeyId,
      );
      return;
    }
    const handler = Object.hasOwn(operations, operation) ? operations[operation] : undefined;
    if (!handler) {
      fail(new ApiError('UnknownOperationException', `Unknown operation ${target}`), auth.accessKeyId);
      return;
    }
    let input: Json;
    try {
      const parsed: unknown = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      input = parsed as Json;
    } catch {
      fail(new ApiError('SerializationException', 'Start of structure or map found where not expected.'), auth.accessKeyId);
      return;
    }
    const isWrite = WRITE_OPERATIONS.has(operation);
    const denied = cred.deny === '*' || cred.deny?.includes(operation) || (writesDenied && isWrite);
    if (denied) {
      const resource = typeof input.SecretId === 'string' ? input.SecretId : typeof input.Name === 'string' ? input.Name : '*';
      fail(
        new ApiError(
          'AccessDeniedException',
          `User: arn:aws:iam::${accountId}:user/${cred.userName ?? 'rotator'} is not authorized to perform: secretsmanager:${operation} on resource: ${resource} because no identity-based policy allows the secretsmanager:${operation} action`,
        ),
        auth.accessKeyId,
      );
      return;
    }
    const injected = failQueue.shift();
    if (injected === 'reset') {
      log({ operation, accessKeyId: auth.accessKeyId, status: 'reset' });
      req.socket.destroy();
      return;
    }
    if (injected === 'ThrottlingException') {
      fail(new ApiError('ThrottlingException', 'Rate exceeded'), auth.accessKeyId);
      return;
    }
    if (injected === 'InternalServiceError') {
      fail(new ApiError('InternalServiceError', 'An error occurred on the server side.', 500), auth.accessKeyId);
      return;
    }

    let loseAnswer = false;
    if (isWrite && crash) {
      if (crash.remaining > 0) {
        crash.remaining--;
      } else {
        crash.fired = true;
        if (!crash.applyLast) {
          log({ operation, accessKeyId: auth.accessKeyId, status: 'reset' });
          req.socket.destroy();
          return;
        }
        loseAnswer = true;
      }
    }

    let result: Json;
    try {
      result = handler(input);
    } catch (err) {
      if (loseAnswer) {
        req.socket.destroy();
        return;
      }
      if (err instanceof ApiError) fail(err, auth.accessKeyId);
      else fail(new ApiError('InternalServiceError', 'An error occurred on the server side.', 500), auth.accessKeyId);
      return;
    }
    if (loseAnswer) {
      log({ operation, accessKeyId: auth.accessKeyId, status: 'reset' });
      req.socket.destroy();
      return;
    }
    log({ operation, accessKeyId: auth.accessKeyId, status: 200 });
    send(res, 200, result);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendError(res, new ApiError('InternalServiceError', 'An error occurred on the server side.', 500));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    region,
    credentials: [...credentials.values()],
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    failNext(count, kind) {
      for (let i = 0; i < count; i++) failQueue.push(kind);
    },
    setDown(d, mode = '503') {
      down = d ? mode : false;
    },
    denyWrites(deny) {
      writesDenied = deny;
    },
    setDeny(accessKeyId, deny) {
      const c = credentials.get(accessKeyId);
      if (!c) throw new Error(`unknown access key ${accessKeyId}`);
      c.deny = deny;
    },
    crashAfterWrites(writes, o = {}) {
      crash = { remaining: writes, applyLast: o.applyLast ?? false, fired: false };
    },
    crashed() {
      return crash?.fired ?? false;
    },
    heal() {
      down = false;
      writesDenied = false;
      failQueue.length = 0;
      crash = undefined;
    },
    snapshot(name) {
      const s = secrets.get(name);
      if (!s) return undefined;
      return {
        name: s.name,
        arn: s.arn,
        tags: Object.fromEntries(s.tags),
        ...(s.deletedDate !== undefined ? { deletedDate: s.deletedDate } : {}),
        versions: [...s.versions.values()].map((v) => ({
          versionId: v.id,
          stages: [...v.stages],
          ...(v.secretString !== undefined ? { secretString: v.secretString } : {}),
          createdDate: v.created,
        })),
      };
    },
    secretNames() {
      return [...secrets.keys()];
    },
    requests,
    reset() {
      secrets.clear();
      requests.length = 0;
    },
  };
}

interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

function parseAuthorization(header: string | undefined): ParsedAuthorization | undefined {
  if (!header?.startsWith('AWS4-HMAC-SHA256 ')) return undefined;
  const fields = new Map(
    header
      .slice('AWS4-HMAC-SHA256 '.length)
      .split(',')
      .map((part) => {
        const [k, ...v] = part.trim().split('=');
        return [k ?? '', v.join('=')] as const;
      }),
  );
  const [accessKeyId, date, region, service, terminator] = (fields.get('Credential') ?? '').split('/');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!accessKeyId || !date || !region || !service || terminator !== 'aws4_request' || !signedHeaders || !signature) return undefined;
  return { accessKeyId, date, region, service, signedHeaders: signedHeaders.split(';'), signature };
}

/** SigV4 as the SDK computes it for JSON-RPC services (no query string, path `/`). */
function signatureMatches(req: http.IncomingMessage, body: Buffer, auth: ParsedAuthorization, secretAccessKey: string): boolean {
  const amzDate = req.headers['x-amz-date'];
  if (typeof amzDate !== 'string' || !amzDate.startsWith(auth.date)) return false;
  const url = new URL(req.url ?? '/', 'http://emulator');
  const canonicalQuery = [...url.searchParams]
    .map(([k, v]) => `${rfc3986(k)}=${rfc3986(v)}`)
    .sort()
    .join('&');
  const canonicalHeaders = auth.signedHeaders
    .map((name) => {
      const raw = req.headers[name];
      const value = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
      return `${name}:${value.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const payloadHash = sha256(body);
  const canonicalRequest = [req.method, url.pathname, canonicalQuery, canonicalHeaders, auth.signedHeaders.join(';'), payloadHash].join('\n');
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  let key = hmac(`AWS4${secretAccessKey}`, auth.date);
  for (const part of [auth.region, auth.service, 'aws4_request']) key = hmac(key, part);
  const expected = Buffer.from(createHmac('sha256', key).update(stringToSign).digest('hex'));
  const given = Buffer.from(auth.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
