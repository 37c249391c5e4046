import { SystemClock } from "@kiln/core";

const clock = new SystemClock();

/**
 * A read's caller deadline, as the core's `acquisition.timeoutMs` gives it (`withTimeout` records it in the
 * process-wide registry `signalTimeLeft` reads, under its documented `Symbol.for` key): the read returns with
 * what it has shortly before `ms`, instead of being aborted.
 */
export function readDeadline(ms: number): AbortSignal {
  const controller = new AbortController();
  const registry = (globalThis as Record<symbol, unknown>)[Symbol.for("@kiln/core/signal-deadlines@1")];
  if (!(registry instanceof WeakMap)) throw new Error("no signal deadline registry: @kiln/core not loaded");
  registry.set(controller.signal, { clock, at: clock.now() + ms });
  return controller.signal;
}
