/**
 * A first-in first-out queue with O(1) `push` and `shift` (amortised), however long it gets.
 * `Array.prototype.shift` moves every element left: O(n) per call, quadratic when a long queue is
 * drained from the front (review 19h: the host's sample writer). Here the front is an index; the
 * array is cut down once the consumed front is at least half of it (and 1,024 entries).
 */
export class FifoQueue<TItem> {
  #items: TItem[] = [];
  #head = 0;

  /** Items queued. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: TItem): void {
    this.#items.push(item);
  }

  /** The oldest item, or undefined when empty. */
  peek(): TItem | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  shift(): TItem | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1_024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}
