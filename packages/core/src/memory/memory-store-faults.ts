// Fault injection for MemoryStore; exported from "@kiln/core/testing" (ADR 0027).

/** A store port whose writes {@link MemoryStoreFaults.hang} can hold. */
export type MemoryStorePort = "samples" | "events" | "processes" | "recipes" | "alarms" | "audit";

/**
 * Fault injection for testing the core against a failing store. `failWrites`,
 * `failWritesUntilCleared`, `failAfterWrites` and `delayWrites` act on `samples.writeBatch`: they
 * are claimed in call order; a failing write takes precedence over an unknown-outcome one.
 * Injected failures are `KILN_STORE_ERROR` with `retryable: true`. `hang` holds the writes of any
 * port (a store that stopped answering).
 */
export class MemoryStoreFaults {
  #failNext = 0;
  #failUntilCleared = false;
  #failAfterNext = 0;
  #delayMs = 0;
  readonly #hanging = new Set<MemoryStorePort>();
  #released: (() => void)[] = [];

  /**
   * Every write to `ports` (`samples.writeBatch`, `events.append`, `processes.save`,
   * `recipes.save`, `alarms.record`, `audit.record`) waits, without settling, until
   * {@link clear}; then it takes effect. Reads are not held.
   */
  hang(...ports: MemoryStorePort[]): void {
    for (const port of ports) this.#hanging.add(port);
  }

  /** The next `count` `writeBatch` calls reject without writing anything. */
  failWrites(count = 1): void {
    this.#failNext += checkCount(count);
  }

  /** Every `writeBatch` call rejects without writing anything until {@link clear}. */
  failWritesUntilCleared(): void {
    this.#failUntilCleared = true;
  }

  /**
   * The next `count` `writeBatch` calls write their batch and then reject, as when a
   * connection drops after the commit: the caller cannot tell the batch was stored.
   */
  failAfterWrites(count = 1): void {
    this.#failAfterNext += checkCount(count);
  }

  /** Every `writeBatch` call waits `ms` on the store's clock before taking effect; 0 removes the delay. */
  delayWrites(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError("delayWrites expects a finite, non-negative delay");
    this.#delayMs = ms;
  }

  /** Removes every fault. */
  clear(): void {
    this.#failNext = 0;
    this.#failUntilCleared = false;
    this.#failAfterNext = 0;
    this.#delayMs = 0;
    this.#hanging.clear();
    for (const release of this.#released.splice(0)) release();
  }

  /** @internal waits while writes to `port` hang; resolves at once otherwise. */
  held(port: MemoryStorePort): Promise<void> | undefined {
    if (!this.#hanging.has(port)) return undefined;
    return new Promise((resolve) => this.#released.push(resolve));
  }

  /** @internal claims the fault, if any, of one `writeBatch` call. */
  claim(): { readonly fault: "fail" | "fail-after" | undefined; readonly delayMs: number } {
    let fault: "fail" | "fail-after" | undefined;
    if (this.#failUntilCleared) fault = "fail";
    else if (this.#failNext > 0) {
      this.#failNext--;
      fault = "fail";
    } else if (this.#failAfterNext > 0) {
      this.#failAfterNext--;
      fault = "fail-after";
    }
    return { fault, delayMs: this.#delayMs };
  }
}

function checkCount(count: number): number {
  if (!Number.isInteger(count) || count < 1) throw new RangeError("the fault count must be a positive integer");
  return count;
}
