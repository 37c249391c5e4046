import type { NewDomainEvent } from "./event-store";

/** Where a process is in its life. `interrupted`: the host stopped while it ran. */
export type ProcessStatus = "created" | "running" | "paused" | "completed" | "aborted" | "failed" | "interrupted";

/** A recipe run on a machine, as persisted. */
export interface ProcessRecord {
  /** Unique id. */
  readonly id: string;
  /** The machine it runs on. */
  readonly machineId: string;
  /** The recipe it runs. */
  readonly recipe: { readonly name: string; readonly version: number };
  /** Parameter values the run was started with. */
  readonly parameters: Readonly<Record<string, unknown>>;
  /** Current status. */
  readonly status: ProcessStatus;
  /** Creation time, ms since epoch. */
  readonly createdAt: number;
  /** When it started running. */
  readonly startedAt?: number;
  /** When it reached a final status. */
  readonly endedAt?: number;
  /** Path of the last step that finished (e.g. `steps[2].loop[17].steps[1]`). */
  readonly lastCompletedStep?: string;
  /** Why it ended, for aborted/failed/interrupted. */
  readonly reason?: string;
  /** The version of the process's event stream this record reflects. */
  readonly version: number;
}

/** Filters for {@link ProcessRepository.list}. */
export interface ProcessFilter {
  /** Only processes of this machine; every machine when omitted. */
  readonly machineId?: string;
  /** Only processes in one of these statuses; every status when omitted. */
  readonly status?: readonly ProcessStatus[];
}

/**
 * Persists processes together with their domain events.
 *
 * Contract: `save` writes the record and appends `events` to the process's event stream
 * atomically (one transaction where the store has them), only when the stream is at
 * `expectedVersion`; otherwise it rejects with `KILN_CONCURRENCY_CONFLICT` and writes nothing.
 * The stored record's `version` is the new stream version. `list` orders by `createdAt`, then `id`.
 */
export interface ProcessRepository {
  /** Saves `record` and appends `events`; resolves with the new stream version. */
  save(record: ProcessRecord, events: readonly NewDomainEvent[], expectedVersion: number): Promise<number>;
  /** The process with that id, or undefined. */
  get(id: string): Promise<ProcessRecord | undefined>;
  /** Processes matching `filter`, oldest first. */
  list(filter?: ProcessFilter): Promise<ProcessRecord[]>;
}
