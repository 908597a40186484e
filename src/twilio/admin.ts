import twilio from 'twilio';
import { Secret } from '../domain/secret.ts';
import { PermanentError } from '../domain/errors.ts';
import type { SeenAccount } from '../domain/subaccount.ts';
import type { TwilioAdminCredential } from '../config.ts';
import { classifyTwilioError } from './errors.ts';
import { createTwilioHttpClient, type TwilioCallObserver } from './http.ts';
import type { ConcurrencyGate } from './gate.ts';
import { verifyingRead, type AuthTokenOps, type KeyPolicy, type RestrictedKeyOps } from './kinds.ts';

type Client = ReturnType<typeof twilio>;

export interface TwilioKey {
  sid: string;
  friendlyName: string;
  dateCreated?: Date;
}

export interface Subaccount {
  sid: string;
  friendlyName: string;
  status: string;
  /** The parent that owns it (Twilio's owner_account_sid). */
  ownerAccountSid: string;
}

/** An account as the parent sees it (GET /2010-04-01/Accounts/{Sid}.json). */
export interface AccountLookup extends SeenAccount {
  friendlyName: string;
}

/** The Twilio operations a rotation needs; steps depend on this narrow surface, not on twilio-node. */
export interface TwilioKeyOps {
  listKeys(accountSid: string): Promise<TwilioKey[]>;
  /** The secret is returned once, here. */
  createKey(accountSid: string, friendlyName: string): Promise<{ sid: string; secret: Secret }>;
  /** 'absent' when Twilio no longer has it: deleting twice is fine. */
  deleteKey(accountSid: string, keySid: string): Promise<'deleted' | 'absent'>;
  /** An authenticated read of the subaccount with the key itself; throws when Twilio rejects it. */
  verifyKey(accountSid: string, keySid: string, secret: Secret): Promise<void>;
  listSubaccounts(): Promise<Subaccount[]>;
  /**
   * The account as the parent's admin credential sees it; undefined when Twilio does not show it
   * to the parent (no such account, or another parent's).
   */
  fetchAccount(accountSid: string): Promise<AccountLookup | undefined>;
}

export interface TwilioAdminOptions {
  credential: TwilioAdminCredential;
  baseUrl?: string;
  timeoutMs: number;
  gate: ConcurrencyGate;
  observe?: TwilioCallObserver;
}

/**
 * Key management with the parent's admin credential (Auth Token or Main key).
 *
 * Whether a parent Main key may act on subaccount resources is contested (FACTS.md). When it is
 * refused with 401, Rotator falls back to the subaccount's own auth token, which the parent may
 * read; that token is held in memory only, never stored.
 */
export class TwilioAdmin implements TwilioKeyOps, RestrictedKeyOps, AuthTokenOps {
  readonly #opts: TwilioAdminOptions;
  readonly #http: ReturnType<typeof createTwilioHttpClient>;
  readonly #parent: Client;
  readonly #subClients = new Map<string, Client>();

  constructor(opts: TwilioAdminOptions) {
    this.#opts = opts;
    this.#http = createTwilioHttpClient({ baseUrl: opts.baseUrl, timeoutMs: opts.timeoutMs, gate: opts.gate, observe: opts.observe });
    this.#parent = this.#client(opts.credential.username, opts.credential.password, opts.credential.accountSid);
  }

  #client(username: string, password: Secret, accountSid: string): Client {
    // edge/region stay unset: they rewrite hostnames and would break TWILIO_BASE_URL.
    return twilio(username, password.reveal(), { accountSid, httpClient: this.#http as never, autoRetry: false });
  }

  /** Run `fn` with the parent credential, falling back to the subaccount's own token on a Main-key 401. */
  async #onSub<T>(accountSid: string, what: string, fn: (c: Client) => Promise<T>): Promise<T> {
    const cached = this.#subClients.get(accountSid);
    try {
      return await fn(cached ?? this.#parent);
    } catch (err) {
      if ((err as { status?: number }).status !== 401 || accountSid === this.#opts.credential.accountSid) throw classifyTwilioError(err, what);
      // Twilio answers 401 both for a bad admin credential and for a suspended or closed
      // subaccount: tell them apart, so the operator is told the right thing to fix.
      const status = await this.#subaccountStatus(accountSid);
      if (status && status !== 'active') {
        throw new PermanentError('twilio_subaccount_inactive', `${what}: subaccount ${accountSid} is ${status} at Twilio; reactivate it or stop managing it`);
      }
      const usesKey = this.#opts.credential.username.startsWith('SK');
      if (!usesKey || cached || status === undefined) throw classifyTwilioError(err, what);
      const sub = await this.#subaccountClient(accountSid, what);
      try {
        return await fn(sub);
      } catch (again) {
        throw classifyTwilioError(again, what);
      }
    }
  }

  /** The subaccount's status as the parent sees it, or undefined when the parent cannot read it. */
  async #subaccountStatus(accountSid: string): Promise<string | undefined> {
    try {
      return (await this.#parent.api.v2010.accounts(accountSid).fetch()).status;
    } catch {
      return undefined;
    }
  }

  async #subaccountClient(accountSid: string, what: string): Promise<Client> {
    let token: string | undefined;
    try {
      token = (await this.#parent.api.v2010.accounts(accountSid).fetch()).authToken;
    } catch (err) {
      throw classifyTwilioError(err, `${what} (fetching the subaccount's auth token after the Main key was refused)`);
    }
    if (!token) throw new PermanentError('twilio_admin_unauthorized', `${what}: the Main key was refused for subaccount ${accountSid} and its auth token is not readable; use the parent's Auth Token`);
    const client = this.#client(accountSid, new Secret(token), accountSid);
    this.#subClients.set(accountSid, client);
    return client;
  }

  async listKeys(accountSid: string): Promise<TwilioKey[]> {
    return this.#onSub(accountSid, `listing API keys of ${accountSid}`, async (c) => {
      const keys = await c.api.v2010.accounts(accountSid).keys.list({ pageSize: 1000 });
      return keys.map((k) => ({ sid: k.sid, friendlyName: k.friendlyName ?? '', dateCreated: k.dateCreated ?? undefined }));
    });
  }

  async createKey(accountSid: string, friendlyName: string): Promise<{ sid: string; secret: Secret }> {
    return this.#onSub(accountSid, `creating an API key in ${accountSid}`, async (c) => {
      const key = await c.api.v2010.accounts(accountSid).newKeys.create({ friendlyName });
      if (!key.secret) throw new PermanentError('twilio_no_secret', `Twilio created key ${key.sid} in ${accountSid} without returning its secret`);
      return { sid: key.sid, secret: new Secret(key.secret) };
    });
  }

  async deleteKey(accountSid: string, keySid: string): Promise<'deleted' | 'absent'> {
    return this.#onSub(accountSid, `deleting API key ${keySid} of ${accountSid}`, async (c) => {
      try {
        await c.api.v2010.accounts(accountSid).keys(keySid).remove();
        return 'deleted' as const;
      } catch (err) {
        if ((err as { status?: number }).status === 404) return 'absent' as const;
        throw err;
      }
    });
  }

  async verifyKey(accountSid: string, keySid: string, secret: Secret): Promise<void> {
    const client = this.#client(keySid, secret, accountSid);
    try {
      // A Standard key may not read /Accounts or /Keys; Messages is the cheapest read it may make.
      await client.api.v2010.accounts(accountSid).messages.page({ pageSize: 1 });
    } catch (err) {
      throw classifyTwilioError(err, `verifying new key ${keySid} on ${accountSid}`, 'new key');
    }
  }

  // ---- Restricted keys (IAM v1) ----

  async listIamKeys(accountSid: string): Promise<{ sid: string; friendlyName: string }[]> {
    return this.#onSub(accountSid, `listing API keys of ${accountSid} (IAM v1)`, async (c) => {
      const keys = await c.iam.v1.getApiKeys.list({ accountSid, pageSize: 1000 });
      return keys.map((k) => ({ sid: k.sid, friendlyName: k.friendlyName ?? '' }));
    });
  }

  async fetchKeyPolicy(accountSid: string, keySid: string): Promise<KeyPolicy | null | undefined> {
    return this.#onSub(accountSid, `reading the policy of key ${keySid} of ${accountSid}`, async (c) => {
      try {
        const key = await c.iam.v1.apiKey(keySid).fetch();
        return (key.policy as KeyPolicy | null | undefined) ?? null;
      } catch (err) {
        if ((err as { status?: number }).status === 404) return undefined;
        throw err;
      }
    });
  }

  async createRestrictedKey(accountSid: string, friendlyName: string, policy: KeyPolicy): Promise<{ sid: string; secret: Secret; policy: KeyPolicy | null }> {
    return this.#onSub(accountSid, `creating a restricted API key in ${accountSid}`, async (c) => {
      const key = await c.iam.v1.newApiKey.create({ accountSid, friendlyName, keyType: 'restricted', policy });
      if (!key.secret) throw new PermanentError('twilio_no_secret', `Twilio created key ${key.sid} in ${accountSid} without returning its secret`);
      return { sid: key.sid, secret: new Secret(key.secret), policy: (key.policy as KeyPolicy | null | undefined) ?? null };
    });
  }

  async deleteIamKey(accountSid: string, keySid: string): Promise<'deleted' | 'absent'> {
    return this.#onSub(accountSid, `deleting API key ${keySid} of ${accountSid} (IAM v1)`, async (c) => {
      try {
        await c.iam.v1.apiKey(keySid).remove();
        return 'deleted' as const;
      } catch (err) {
        if ((err as { status?: number }).status === 404) return 'absent' as const;
        throw err;
      }
    });
  }

  async verifyRestrictedKey(accountSid: string, keySid: string, secret: Secret, policy: KeyPolicy): Promise<string> {
    const client = this.#client(keySid, secret, accountSid);
    const read = verifyingRead(policy);
    try {
      if (read === '/twilio/usage/balance/read') await client.api.v2010.accounts(accountSid).balance.fetch();
      else if (read) await client.api.v2010.accounts(accountSid).messages.page({ pageSize: 1 });
      else {
        // The policy allows none of the reads Rotator knows: a refusal for the policy (70051)
        // still proves Twilio authenticated the key.
        try {
          await client.api.v2010.accounts(accountSid).messages.page({ pageSize: 1 });
        } catch (err) {
          if ((err as { code?: number }).code === 70051) return 'authenticated (refused by its policy, 70051, as expected)';
          throw err;
        }
      }
      return read ?? 'authenticated';
    } catch (err) {
      throw classifyTwilioError(err, `verifying new restricted key ${keySid} on ${accountSid}`, 'new key');
    }
  }

  // ---- The Auth Token (Accounts v1) ----

  async primaryAuthToken(accountSid: string): Promise<Secret> {
    let token: string | undefined;
    try {
      token = (await this.#parent.api.v2010.accounts(accountSid).fetch()).authToken;
    } catch (err) {
      throw classifyTwilioError(err, `reading the Auth Token of ${accountSid}`);
    }
    if (!token) throw new PermanentError('twilio_admin_unauthorized', `the Auth Token of ${accountSid} is not readable with the admin credential; use the parent's Auth Token`);
    return new Secret(token);
  }

  async createSecondaryAuthToken(accountSid: string, primary: Secret): Promise<Secret> {
    try {
      const made = await this.#client(accountSid, primary, accountSid).accounts.v1.secondaryAuthToken().create();
      if (!made.secondaryAuthToken) throw new PermanentError('twilio_no_secret', `Twilio created a secondary Auth Token for ${accountSid} without returning it`);
      return new Secret(made.secondaryAuthToken);
    } catch (err) {
      throw classifyTwilioError(err, `creating a secondary Auth Token for ${accountSid}`);
    }
  }

  async deleteSecondaryAuthToken(accountSid: string, primary: Secret): Promise<'deleted' | 'absent'> {
    try {
      await this.#client(accountSid, primary, accountSid).accounts.v1.secondaryAuthToken().remove();
      return 'deleted';
    } catch (err) {
      if ((err as { status?: number }).status === 404) return 'absent';
      throw classifyTwilioError(err, `deleting the secondary Auth Token of ${accountSid}`);
    }
  }

  async promoteSecondaryAuthToken(accountSid: string, secondary: Secret): Promise<void> {
    try {
      await this.#client(accountSid, secondary, accountSid).accounts.v1.authTokenPromotion().update();
    } catch (err) {
      throw classifyTwilioError(err, `promoting the secondary Auth Token of ${accountSid}`, 'new key');
    }
    // A Main-key fallback client built on the old token would now be refused.
    this.#subClients.delete(accountSid);
  }

  async authTokenWorks(accountSid: string, token: Secret): Promise<boolean> {
    try {
      await this.#client(accountSid, token, accountSid).api.v2010.accounts(accountSid).messages.page({ pageSize: 1 });
      return true;
    } catch (err) {
      if ((err as { status?: number }).status === 401) return false;
      throw classifyTwilioError(err, `checking an Auth Token of ${accountSid}`, 'new key');
    }
  }

  /**
   * One authenticated read of the parent account with the admin credential: start-up refuses to
   * run with a credential Twilio refuses, and /readyz reports it. An inactive parent is permanent too.
   */
  async checkCredential(): Promise<void> {
    const parent = this.#opts.credential.accountSid;
    let status: string;
    try {
      status = (await this.#parent.api.v2010.accounts(parent).fetch()).status;
    } catch (err) {
      throw classifyTwilioError(err, `reading parent account ${parent}`);
    }
    if (status !== 'active') throw new PermanentError('twilio_parent_inactive', `parent account ${parent} is ${status} at Twilio`);
  }

  async listSubaccounts(): Promise<Subaccount[]> {
    try {
      const parent = this.#opts.credential.accountSid;
      const all = await this.#parent.api.v2010.accounts.list({ pageSize: 1000 });
      // The list includes the parent itself (its owner is itself): not a subaccount.
      return all.filter((a) => a.sid !== parent && a.ownerAccountSid === parent).map((a) => ({ sid: a.sid, friendlyName: a.friendlyName, status: a.status, ownerAccountSid: a.ownerAccountSid }));
    } catch (err) {
      throw classifyTwilioError(err, 'listing subaccounts');
    }
  }

  async fetchAccount(accountSid: string): Promise<AccountLookup | undefined> {
    const parent = this.#opts.credential.accountSid;
    try {
      const a = await this.#parent.api.v2010.accounts(accountSid).fetch();
      return { accountSid: a.sid, ownerAccountSid: a.ownerAccountSid, status: a.status, friendlyName: a.friendlyName };
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 404) return undefined;
      if (status === 401 && accountSid !== parent) {
        // Twilio answers 401 both for a bad admin credential and for an account outside the
        // parent's tree: if the parent can read itself, the credential is fine and the account is
        // not one the parent may see.
        try {
          await this.#parent.api.v2010.accounts(parent).fetch();
        } catch (again) {
          throw classifyTwilioError(again, `looking up account ${accountSid}`);
        }
        return undefined;
      }
      throw classifyTwilioError(err, `looking up account ${accountSid}`);
    }
  }
}
