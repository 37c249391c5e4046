import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import type { NewDomainEvent } from "@kiln/core/driver-kit";
import type { Logger } from "../ports/logger";
import type { ProcessRecord, ProcessRepository } from "@kiln/core/driver-kit";

type ProcessEventType =
  "process-start" | "process-pause" | "process-resume" | "process-end" | "step-start" | "step-end";
type ProcessEventFields<TType extends ProcessEventType> = Omit<KilnEvents[TType], "at" | "aggregateId">;

/** What a {@link ProcessJournal} writes to. */
export interface ProcessJournalOptions {
  readonly record: ProcessRecord;
  readonly processes: ProcessRepository;
  readonly clock: Clock;
  readonly bus?: EventBus<KilnEvents>;
  readonly logger: Logger;
}

/**
 * A process's record and event stream: events are published on the bus at once and kept
 * until the next {@link save}, which writes them with the record at the expected version. A
 * failed save publishes `process-save-fail` and keeps the events for the next save.
 */
export class ProcessJournal {
  readonly #options: ProcessJournalOptions;
  readonly #pending: NewDomainEvent[] = [];
  #record: ProcessRecord;
  #version = 0;
  #lastSaveAt: number;
  #lastSaveFailed = false;
  #lastSaveError: unknown;

  constructor(options: ProcessJournalOptions) {
    this.#options = options;
    this.#record = options.record;
    this.#lastSaveAt = options.clock.now();
  }

  /** The current record. */
  get record(): ProcessRecord {
    return this.#record;
  }

  /** When the last save (successful or not) ended. */
  get lastSaveAt(): number {
    return this.#lastSaveAt;
  }

  /** The error of the last save, when it failed. */
  get saveFailure(): { readonly error: unknown } | undefined {
    return this.#lastSaveFailed ? { error: this.#lastSaveError } : undefined;
  }

  /** True when the record and every event have been saved. */
  get persisted(): boolean {
    return !this.#lastSaveFailed && this.#pending.length === 0;
  }

  /** Changes the record (saved at the next {@link save}). */
  update(changes: Partial<ProcessRecord>): void {
    this.#record = { ...this.#record, ...changes };
  }

  /** Publishes an event of the process and keeps it for the next {@link save}. */
  emit<TType extends ProcessEventType>(type: TType, fields: ProcessEventFields<TType>): void {
    const at = this.#options.clock.now();
    this.#pending.push({ type, payload: { ...fields }, at });
    void this.#options.bus?.publish(type, { at, aggregateId: this.#record.id, ...fields } as KilnEvents[TType]);
  }

  /**
   * Saves the record with the pending events. Failures are reported and the events kept, unless
   * `rethrow`. Saves run one at a time, in call order (each at the version the one before left),
   * so a run that stops waiting for a save (an abort) cannot race its next save against it.
   */
  save(options: { rethrow?: boolean } = {}): Promise<void> {
    const turn = this.#tail.then(() => this.#saveNow(options));
    this.#tail = turn.catch(() => undefined);
    return turn;
  }

  #tail: Promise<void> = Promise.resolve();

  async #saveNow(options: { rethrow?: boolean }): Promise<void> {
    const { clock, processes, bus, logger } = this.#options;
    const count = this.#pending.length;
    const events = this.#pending.slice(0, count);
    const record: ProcessRecord = { ...this.#record, version: this.#version + count };
    try {
      this.#version = await processes.save(record, events, this.#version);
      this.#pending.splice(0, count);
      this.#record = { ...this.#record, version: this.#version };
      this.#lastSaveFailed = false;
    } catch (error) {
      if (options.rethrow === true) throw error;
      this.#lastSaveFailed = true;
      this.#lastSaveError = error;
      logger.warn({ processId: this.#record.id, error }, "the process could not be saved; retrying at the next save");
      void bus?.publish("process-save-fail", {
        at: clock.now(),
        processId: this.#record.id,
        pendingEvents: count,
        error,
      });
    } finally {
      this.#lastSaveAt = clock.now();
    }
  }
}
