/**
 * Ordered collections with Twilio-style cursor paging.
 *
 * Twilio's v2010 list pages carry a `PageToken` in `next_page_uri` (`PA<last sid>` forward,
 * `PB<first sid>` backward). Resolving a token must not scan the collection, so every item keeps
 * its absolute position in a Map and removal leaves a hole instead of shifting the array.
 */

export interface HasSid {
  readonly sid: string;
}

export interface PageSlice<T> {
  items: T[];
  /** A matching item exists after the last one returned, in reading order. */
  hasNext: boolean;
  /** The page did not start at the beginning of the collection. */
  hasPrevious: boolean;
}

export class OrderedIndex<T extends HasSid> {
  private slots: (T | undefined)[] = [];
  /** Absolute position of slots[0]; grows when leading holes are trimmed. */
  private offset = 0;
  /** First slot that may be occupied. */
  private head = 0;
  private readonly positions = new Map<string, number>();
  /**
   * Removed sids keep their position so that a page token naming a since-deleted item (a key
   * deleted between two page reads) still resolves. Only positions are kept, never the item.
   */
  private readonly tombstones = new Map<string, number>();
  private live = 0;

  get size(): number {
    return this.live;
  }

  add(item: T): void {
    this.positions.set(item.sid, this.offset + this.slots.length);
    this.slots.push(item);
    this.live++;
  }

  get(sid: string): T | undefined {
    const p = this.positions.get(sid);
    return p === undefined ? undefined : this.slots[p - this.offset];
  }

  has(sid: string): boolean {
    return this.positions.has(sid);
  }

  remove(sid: string): T | undefined {
    const p = this.positions.get(sid);
    if (p === undefined) return undefined;
    const i = p - this.offset;
    const item = this.slots[i];
    this.slots[i] = undefined;
    this.positions.delete(sid);
    this.tombstones.set(sid, p);
    this.live--;
    this.trimHead();
    return item;
  }

  /** Drops the oldest item; used to keep per-account message stores bounded. */
  removeOldest(): T | undefined {
    for (let i = this.head; i < this.slots.length; i++) {
      const item = this.slots[i];
      if (item) {
        this.slots[i] = undefined;
        this.positions.delete(item.sid);
        this.live--;
        this.trimHead();
        return item;
      }
    }
    return undefined;
  }

  *values(): IterableIterator<T> {
    for (let i = this.head; i < this.slots.length; i++) {
      const item = this.slots[i];
      if (item) yield item;
    }
  }

  /**
   * One page in reading order. `ascending` reads oldest first (accounts, keys); descending reads
   * newest first (messages). `token` is `PA<sid>` (items after sid) or `PB<sid>` (items before
   * sid, i.e. the previous page); an unknown token restarts from the beginning.
   */
  page(opts: {
    size: number;
    ascending: boolean;
    token?: string | undefined;
    offset?: number;
    filter?: ((item: T) => boolean) | undefined;
  }): PageSlice<T> {
    const { size, ascending, filter } = opts;
    const first = this.head;
    const last = this.slots.length - 1;
    // Reading direction in slot indices: +1 reads forward through the stored order.
    let step = ascending ? 1 : -1;
    let start = ascending ? first : last;
    let backward = false;
    let skippedAny = false;
    const token = opts.token;
    if (token && token.length > 2) {
      const anchor = this.positionOf(token.slice(2));
      if (anchor !== undefined) {
        const i = anchor - this.offset;
        if (token.startsWith('PB')) {
          backward = true;
          step = -step;
        }
        start = i + step;
        skippedAny = true;
      }
    } else if (opts.offset && opts.offset > 0) {
      // Page=N without a token: skip N*PageSize matching items. O(offset), only for clients
      // that build their own page numbers; twilio-node always follows next_page_uri.
      let skipped = 0;
      let i = start;
      while (i >= first && i <= last && skipped < opts.offset) {
        const item = this.slots[i];
        if (item && (!filter || filter(item))) skipped++;
        i += step;
      }
      start = i;
      skippedAny = skipped > 0;
    }
    const items: T[] = [];
    let hasMore = false;
    for (let i = start; i >= first && i <= last; i += step) {
      const item = this.slots[i];
      if (!item || (filter && !filter(item))) continue;
      if (items.length === size) {
        hasMore = true;
        break;
      }
      items.push(item);
    }
    if (backward) {
      items.reverse();
      // A backward read came from the page after it, so that one exists.
      return { items, hasNext: true, hasPrevious: hasMore };
    }
    return { items, hasNext: hasMore, hasPrevious: skippedAny };
  }

  private positionOf(sid: string): number | undefined {
    const p = this.positions.get(sid) ?? this.tombstones.get(sid);
    if (p === undefined || p < this.offset) return undefined;
    return p;
  }

  private trimHead(): void {
    while (this.head < this.slots.length && this.slots[this.head] === undefined) this.head++;
    // Amortised O(1): compact only when the dead prefix dominates the array.
    if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.offset += this.head;
      this.head = 0;
      for (const [sid, p] of this.tombstones) if (p < this.offset) this.tombstones.delete(sid);
    }
  }
}

/** Where a neighbouring page starts: its number and the token that resolves it. */
export interface PageLink {
  page: number;
  token: string;
}

/** One list request's page, read the way both of Twilio's paging styles read it. */
export interface RequestedPage<T> {
  size: number;
  page: number;
  /** The request's own PageToken, if it had one. */
  token: string | undefined;
  items: T[];
  next: PageLink | null;
  previous: PageLink | null;
}

/**
 * The paging both list styles share (v2010's `next_page_uri`, IAM v1's `meta`): `PageSize`
 * (capped at 1000, as Twilio caps rather than refuses), `Page` and `PageToken` read and checked,
 * the slice read, and the neighbours' tokens (`PA<last sid>` forward, `PB<first sid>` back). Each
 * API then writes its own body. A string is the 400's message.
 */
export function requestedPage<T extends HasSid>(query: URLSearchParams, read: (o: { size: number; page: number; token: string | undefined }) => PageSlice<T>): RequestedPage<T> | string {
  const rawSize = Number(query.get('PageSize') ?? 50);
  const page = Number(query.get('Page') ?? 0);
  if (!Number.isInteger(rawSize) || rawSize < 1) return 'PageSize must be a positive integer';
  if (!Number.isInteger(page) || page < 0) return 'Page must be a non-negative integer';
  const size = Math.min(rawSize, 1000);
  const token = query.get('PageToken') ?? undefined;
  const slice = read({ size, page, token });
  const first = slice.items[0];
  const last = slice.items.at(-1);
  return {
    size,
    page,
    token,
    items: slice.items,
    next: slice.hasNext && last ? { page: page + 1, token: `PA${last.sid}` } : null,
    previous: slice.hasPrevious && first && page > 0 ? { page: page - 1, token: `PB${first.sid}` } : null,
  };
}
