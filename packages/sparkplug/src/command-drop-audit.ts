import type { Clock } from "@kiln/core";

/** Why a whole command message was dropped before any of its metrics became a Kiln command. */
export type DroppedCommandReason =
  "queue-full" | "too-many-metrics" | "too-large" | "retained" | "undecodable" | "session-closing" | "session-unborn";

/** Which command topic a dropped message came on. */
export type DroppedCommand = "NCMD" | "DCMD";

/** Entries at most this often per reason (ms): a flood of dropped messages cannot flood the audit trail. */
const AUDIT_INTERVAL_MS = 1_000;

/**
 * Audits whole NCMD and DCMD messages the edge node drops unhandled (a full command queue, too many
 * metrics, a payload that does not decode), so that a command that was never carried out leaves
 * an audit entry even when it never became a Kiln command (IEC 62443-3-3 CR 2.8). A flood must not
 * turn into a flood of audit writes, so drops are summed per reason: the first drop after a quiet
 * second is audited at once, later ones at most once a second per topic and reason, each entry giving how
 * many messages it stands for. `flush()` (on stop) audits what is pending.
 */
export class CommandDropAudit {
  readonly #pending = new Map<string, { command: DroppedCommand; reason: DroppedCommandReason; messages: number }>();
  readonly #audit: (command: DroppedCommand, reason: DroppedCommandReason, messages: number) => Promise<void>;
  readonly #clock: Clock;
  #wait: AbortController | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #lastAt = Number.NEGATIVE_INFINITY;

  constructor(
    clock: Clock,
    audit: (command: DroppedCommand, reason: DroppedCommandReason, messages: number) => Promise<void>,
  ) {
    this.#clock = clock;
    this.#audit = audit;
  }

  /** Counts one dropped `command` message; its entry follows within a second. */
  record(command: DroppedCommand, reason: DroppedCommandReason): void {
    const key = `${command} ${reason}`;
    const pending = this.#pending.get(key);
    if (pending === undefined) this.#pending.set(key, { command, reason, messages: 1 });
    else pending.messages++;
    if (this.#wait !== undefined) return;
    const wait = new AbortController();
    this.#wait = wait;
    const delay = Math.max(0, this.#lastAt + AUDIT_INTERVAL_MS - this.#now());
    void this.#clock.sleep(delay, wait.signal).then(
      () => {
        if (this.#wait === wait) void this.flush();
      },
      () => undefined,
    );
  }

  /** Audits every pending drop now (one entry per command topic and reason); resolves when the entries are written or refused. */
  flush(): Promise<void> {
    this.#wait?.abort();
    this.#wait = undefined;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    if (pending.length > 0) this.#lastAt = this.#now();
    this.#flushing = this.#flushing.then(async () => {
      for (const { command, reason, messages } of pending)
        await this.#audit(command, reason, messages).catch(() => undefined);
    });
    return this.#flushing;
  }

  /** Elapsed time is measured on the monotonic clock where there is one (ADR 0021). */
  #now(): number {
    return this.#clock.monotonicNow?.() ?? this.#clock.now();
  }
}
