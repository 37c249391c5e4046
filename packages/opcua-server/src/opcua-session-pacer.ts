import { performance } from "node:perf_hooks";

/** The bounds a {@link SessionPacer} works within (the server's limits; read at each call). */
export interface PacerBounds {
  /** Server time (ms) one session's paced calls may take per second, on average; a burst of one second's worth. */
  readonly msPerSecond: number;
  /** Most paced calls of one session waiting for its budget; one more is refused. */
  readonly maxWaiting: number;
}

/** One session's account: a bucket of server time that refills at `msPerSecond`. */
interface Account {
  /** Server time (ms) the session may still take; negative: what it owes. */
  balance: number;
  /** When {@link Account.balance} was last refilled (`performance.now()`, ms). */
  refilled: number;
  /** How many paced calls of the session wait for their turn. */
  waiting: number;
  /** Settles when the session's last admitted call has been charged: its calls run in arrival order. */
  queue: Promise<void>;
}

/**
 * Paces one session's expensive service calls (Browse, BrowseNext, TranslateBrowsePathsToNodeIds,
 * Read) by the server time they take: each call is charged, after it ran, the time from its start
 * until its response was encoded and sent; a session that owes time has its next paced call
 * delayed until the time is paid back at `msPerSecond`, and beyond `maxWaiting` waiting calls a
 * further one is refused (the caller answers `BadTooManyOperations`). Per session: another
 * session's account is its own, so one client's flood of calls, each within its per-call bound,
 * takes at most its share of the event loop and the others' calls keep their latency.
 */
export class SessionPacer {
  readonly #accounts = new WeakMap<object, Account>();

  constructor(readonly bounds: () => PacerBounds) {}

  /**
   * Waits until `session` may run a paced call. Resolves a function to call once the call has
   * been answered, with the server time (ms) it took (charged to the session; the session's next
   * waiting call is let through only then), or `undefined` when `maxWaiting` calls of the session
   * already wait: refuse it.
   */
  async admit(session: object): Promise<((ms: number) => void) | undefined> {
    const account = this.#accountOf(session);
    this.#refill(account);
    // A session within its budget is never refused, however many calls it pipelines.
    if (account.balance < 0 && account.waiting >= this.bounds().maxWaiting) return undefined;
    account.waiting++;
    const before = account.queue;
    let done!: () => void;
    account.queue = new Promise<void>((resolve) => (done = resolve));
    await before;
    this.#refill(account);
    if (account.balance < 0) {
      const ms = Math.ceil((-account.balance * 1_000) / this.bounds().msPerSecond);
      await new Promise((resolve) => setTimeout(resolve, ms));
      this.#refill(account);
    }
    account.waiting--;
    let charged = false;
    return (ms) => {
      if (charged) return;
      charged = true;
      this.#refill(account);
      account.balance -= ms;
      done();
    };
  }

  /** Charges `session` server time (ms) a call took outside its turn (a refused one). */
  charge(session: object, ms: number): void {
    const account = this.#accountOf(session);
    this.#refill(account);
    account.balance -= ms;
  }

  #accountOf(session: object): Account {
    let account = this.#accounts.get(session);
    if (!account) {
      account = {
        balance: this.bounds().msPerSecond,
        refilled: performance.now(),
        waiting: 0,
        queue: Promise.resolve(),
      };
      this.#accounts.set(session, account);
    }
    return account;
  }

  #refill(account: Account): void {
    const now = performance.now();
    const { msPerSecond } = this.bounds();
    account.balance = Math.min(msPerSecond, account.balance + ((now - account.refilled) * msPerSecond) / 1_000);
    account.refilled = now;
  }
}
