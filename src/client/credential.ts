import type { TwilioApiKeyCredential } from '../domain/secret.ts';

/** What the client reads a credential from: any of Rotator's stores (providers/) has this method. */
export interface CredentialReader {
  readCurrent(path: string): Promise<TwilioApiKeyCredential | undefined>;
}

/**
 * One managed credential as the application holds it: read from the store, kept for `refreshMs`,
 * read again when older (one read at a time, however many requests ask), and read again at once
 * when Twilio refused it. An empty entry — and the AWS bootstrap placeholder, which the AWS
 * provider reads as empty — is "no credential yet".
 */
export class CredentialCache {
  #value: TwilioApiKeyCredential | undefined;
  #readAt = -Infinity;
  #reading: Promise<TwilioApiKeyCredential | undefined> | undefined;
  readonly #listeners = new Set<(keySid: string | undefined) => void>();

  constructor(
    private readonly reader: CredentialReader,
    private readonly path: string,
    private readonly refreshMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The key SID in use now (undefined before the first read or while the store is empty). */
  get keySid(): string | undefined {
    return this.#value?.apiKeySid;
  }

  /** Told whenever the key in use changes (the heartbeat reports it at once). */
  onChange(listener: (keySid: string | undefined) => void): void {
    this.#listeners.add(listener);
  }

  /**
   * The credential to send a request with: the cached one while fresh, else what the store holds
   * now. A store that cannot be read (an outage, not a rotation) leaves the application on the
   * credential it has, rather than failing its request: if that key was deleted meanwhile, Twilio's
   * 401 says so. With nothing cached, the store's error is the caller's.
   */
  async current(): Promise<TwilioApiKeyCredential | undefined> {
    if (this.#value && this.now() - this.#readAt < this.refreshMs) return this.#value;
    try {
      return await this.reload();
    } catch (err) {
      if (this.#value) return this.#value;
      throw err;
    }
  }

  /**
   * Read the store now. Callers that ask while a read is in flight share it; a 401 that arrives
   * while one is in flight waits for it rather than starting another.
   */
  reload(): Promise<TwilioApiKeyCredential | undefined> {
    this.#reading ??= this.#read().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  async #read(): Promise<TwilioApiKeyCredential | undefined> {
    const started = this.now();
    const before = this.#value?.apiKeySid;
    const value = await this.reader.readCurrent(this.path);
    this.#value = value;
    this.#readAt = started;
    if (value?.apiKeySid !== before) for (const l of this.#listeners) l(value?.apiKeySid);
    return value;
  }

  /**
   * After Twilio answered 401 to `refusedKeySid`: the credential to retry with, or undefined when
   * the store holds nothing newer (the 401 is then the application's to see). A read that started
   * after the refused request was sent is as good as a new one.
   */
  async afterRefusal(refusedKeySid: string): Promise<TwilioApiKeyCredential | undefined> {
    try {
      let fresh = this.#reading ? await this.#reading : undefined;
      if (!fresh || fresh.apiKeySid === refusedKeySid) fresh = await this.reload();
      return fresh && fresh.apiKeySid !== refusedKeySid ? fresh : undefined;
    } catch {
      // The store cannot be read: the 401 stands.
      return undefined;
    }
  }
}
