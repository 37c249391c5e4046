import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import type { ProcessRecord, ProcessRepository, ProcessStatus } from "@kiln/core/driver-kit";

/** Options of {@link recoverInterrupted}. */
export interface RecoverInterruptedOptions {
  /** Timestamps the `interrupted` status. */
  readonly clock: Clock;
  /**
   * Only processes of this machine. Set it when several hosts share one store: a host must
   * recover only the machines it runs. @default every machine
   */
  readonly machineId?: string;
  /** Where the `process-end` events (reason `interrupted`) are published. */
  readonly bus?: EventBus<KilnEvents>;
  /** Recorded as the processes' `reason`. @default "the host stopped while the process was active" */
  readonly reason?: string;
}

/** What {@link recoverInterrupted} did. */
export interface RecoveryResult {
  /** The processes now marked `interrupted`, as saved. */
  readonly recovered: readonly ProcessRecord[];
  /** The processes that could not be saved (e.g. a concurrent change), with the error. */
  readonly failures: readonly { readonly processId: string; readonly error: unknown }[];
}

const ACTIVE: readonly ProcessStatus[] = ["created", "running", "paused"];

/**
 * Marks every process left `created`, `running` or `paused` by a previous run of the host as
 * `interrupted`, keeping its last completed step, and appends a `process-end` event with
 * reason `interrupted` (saved with the record). Call it at startup, before starting recipes, so
 * no process stays "running" forever. The machine itself is not touched: a restarted host's
 * state machine starts in its initial state.
 *
 * @example
 * const { recovered } = await recoverInterrupted(store.processes, { clock, machineId: "reactor-1" });
 * for (const process of recovered) log.warn(`process ${process.id} interrupted after ${process.lastCompletedStep}`);
 */
export async function recoverInterrupted(
  processes: ProcessRepository,
  options: RecoverInterruptedOptions,
): Promise<RecoveryResult> {
  const filter =
    options.machineId === undefined ? { status: ACTIVE } : { status: ACTIVE, machineId: options.machineId };
  const found = await processes.list(filter);
  const recovered: ProcessRecord[] = [];
  const failures: { processId: string; error: unknown }[] = [];
  const reason = options.reason ?? "the host stopped while the process was active";
  for (const process of found) {
    const at = options.clock.now();
    const event: KilnEvents["process-end"] = {
      at,
      aggregateId: process.id,
      processId: process.id,
      machineId: process.machineId,
      reason: "interrupted",
      message: reason,
      ...(process.lastCompletedStep === undefined ? {} : { lastCompletedStep: process.lastCompletedStep }),
      durationMs: at - (process.startedAt ?? process.createdAt),
    };
    const { at: _at, aggregateId: _aggregateId, ...payload } = event;
    const record: ProcessRecord = {
      ...process,
      status: "interrupted",
      endedAt: at,
      reason,
      version: process.version + 1,
    };
    try {
      const version = await processes.save(record, [{ type: "process-end", payload, at }], process.version);
      recovered.push({ ...record, version });
      void options.bus?.publish("process-end", event);
    } catch (error) {
      failures.push({ processId: process.id, error });
    }
  }
  return { recovered, failures };
}
