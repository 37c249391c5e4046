/** One entry of an {@link OldestFirstIndex}: a link of its list, oldest to newest. */
interface Link<TKey, TValue> {
  readonly key: TKey;
  readonly value: TValue;
  older: Link<TKey, TValue> | undefined;
  newer: Link<TKey, TValue> | undefined;
}

/**
 * Entries by key, kept in the order they were filed (oldest first): what the host forgets or
 * evicts in that order (ADR 0030, amendment fix19g-index). Every operation is O(1), however many
 * entries were filed and removed before.
 *
 * Not a `Map` in insertion order: V8 leaves a hole for each deleted entry of a `Map` until the
 * table is rebuilt, and iteration walks the holes, so "delete the first, then ask for the new
 * first" walks every entry deleted so far: quadratic (400,000 evictions at 200,000 entries:
 * 31 s). Here the order is a doubly-linked list beside the `Map`, which is only ever looked up.
 */
export class OldestFirstIndex<TKey, TValue> {
  readonly #links = new Map<TKey, Link<TKey, TValue>>();
  #oldest: Link<TKey, TValue> | undefined;
  #newest: Link<TKey, TValue> | undefined;

  get size(): number {
    return this.#links.size;
  }

  has(key: TKey): boolean {
    return this.#links.has(key);
  }

  get(key: TKey): TValue | undefined {
    return this.#links.get(key)?.value;
  }

  /** Files `key` with `value` as the newest entry; one already filed is moved there. */
  add(key: TKey, value: TValue): void {
    this.delete(key);
    const link: Link<TKey, TValue> = { key, value, older: this.#newest, newer: undefined };
    if (this.#newest === undefined) this.#oldest = link;
    else this.#newest.newer = link;
    this.#newest = link;
    this.#links.set(key, link);
  }

  /** Removes `key`; false if it was not filed. */
  delete(key: TKey): boolean {
    const link = this.#links.get(key);
    if (link === undefined) return false;
    this.#links.delete(key);
    if (link.older === undefined) this.#oldest = link.newer;
    else link.older.newer = link.newer;
    if (link.newer === undefined) this.#newest = link.older;
    else link.newer.older = link.older;
    // The link keeps its own pointers, so an iteration standing on it goes on to what was newer.
    return true;
  }

  /** The oldest entry, or undefined when empty. */
  oldest(): { readonly key: TKey; readonly value: TValue } | undefined {
    return this.#oldest;
  }

  /** Removes and returns the oldest entry, or undefined when empty. */
  shift(): { readonly key: TKey; readonly value: TValue } | undefined {
    const oldest = this.#oldest;
    if (oldest !== undefined) this.delete(oldest.key);
    return oldest;
  }

  /**
   * Entries oldest first. The entry just given may be deleted during the iteration (the next one
   * is still reached); entries filed during it are reached too.
   */
  *entries(): IterableIterator<{ readonly key: TKey; readonly value: TValue }> {
    for (let link = this.#oldest; link !== undefined; link = link.newer) yield link;
  }
}
