import { KilnError } from "../domain/errors";
import { raceAbort } from "../driver-kit/abort";
import type { Sample } from "../domain/sample";
import type { TagCatalog } from "../domain/tags";
import type { Disposer } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import { monotonicNow } from "../runtime/system-clock";
import type { Logger } from "../ports/logger";
import type { PlannedStep } from "./recipe-plan";
import type { ProcessProblem } from "./recipe-process";
import type { RecipeIo, WriteOrigin } from "./recipe-io";
import {
  isParameterRef,
  type ConditionOperator,
  type ParameterValue,
  type PulseStep,
  type RampStep,
  type RecipeValue,
  type SetStep,
  type WaitStep,
  type WaitUntilStep,
} from "./recipe-schema";

/** The parameter values a step runs with (the run's, or a callee's). A null-prototype map. */
export interface Frame {
  readonly values: Readonly<Record<string, ParameterValue>>;
}

/** What a step runner reports: a `timeout` outcome (waitUntil with `onTimeout: continue`) and measured times (ms). */
export interface StepOutcome {
  readonly outcome?: "completed" | "timeout";
  readonly actualMs?: number;
  readonly plannedMs?: number;
}

/** What the step runners of one process share. */
export interface StepRunContext {
  readonly processId: string;
  /** Passed with every write: the process and who started it. */
  readonly origin: WriteOrigin;
  readonly io: RecipeIo;
  readonly clock: Clock;
  readonly catalog: TagCatalog;
  readonly logger: Logger;
  /** Aborts the process's current step. */
  readonly signal: AbortSignal;
  /** Pulse timing errors (open time − planned, ms), appended by {@link runPulse}. */
  readonly pulseErrors: number[];
  /** Wait timing errors (actual − planned, ms), appended by {@link runWait}. */
  readonly waitErrors: number[];
  /** Problems met that do not fail the step on their own. */
  readonly problems: ProcessProblem[];
  /** Aborts the process (not faulted) and returns the error to throw. */
  abort(reason: string): unknown;
  /**
   * Hands over a pulse's off write sent after the pulse was aborted or failed: the step does not
   * wait for it; the process reports its failure (a `pulse-off` problem) when it settles.
   */
  closeLater(tag: string, write: Promise<void>): void;
}

const INTEGER_TYPES = new Set(["int16", "uint16", "int32", "uint32"]);

/** The planned duration (ms) of a timed step (pulse, wait, ramp), or undefined. */
export function plannedMsOf(step: PlannedStep, frame: Frame): number | undefined {
  switch (step.kind) {
    case "pulse":
    case "wait":
    case "ramp":
      return numberOf(step.body.durationMs, frame);
    default:
      return undefined;
  }
}

/** `set`: one write. */
export async function runSet(body: SetStep["set"], frame: Frame, context: StepRunContext): Promise<StepOutcome> {
  await context.io.write(body.tag, valueOf(body.value, frame), context.signal, context.origin);
  return {};
}

/** `wait`: sleeps on the clock; records its timing error. */
export async function runWait(body: WaitStep["wait"], frame: Frame, context: StepRunContext): Promise<StepOutcome> {
  const planned = numberOf(body.durationMs, frame);
  const start = monotonicNow(context.clock);
  await context.clock.sleep(planned, context.signal);
  const actualMs = monotonicNow(context.clock) - start;
  context.waitErrors.push(actualMs - planned);
  return { actualMs };
}

/**
 * `pulse`: writes `on`, sleeps, writes `off`. The off value is written even when the pulse
 * failed or was aborted (without the signal: an aborted pulse must still close). It goes out
 * after the `on` write has settled (writes to one tag go out in order), so it is never
 * overtaken by it. An aborted or failed pulse does not wait for its off write, nor does a pulse
 * aborted while its off write is in flight: the write is handed to
 * {@link StepRunContext.closeLater}, so the safe state waits for it only when the pulse's tag is
 * a safe-state tag (adversarial review 15t, M2; 15s, M1).
 */
export async function runPulse(body: PulseStep["pulse"], frame: Frame, context: StepRunContext): Promise<StepOutcome> {
  const { io, clock } = context;
  const planned = numberOf(body.durationMs, frame);
  let failure: { error: unknown } | undefined;
  let onAt = monotonicNow(clock);
  try {
    await io.write(body.tag, valueOf(body.on, frame), context.signal, context.origin);
    onAt = monotonicNow(clock);
    await clock.sleep(planned, context.signal);
  } catch (error) {
    failure = { error };
  }
  const off = io.write(body.tag, valueOf(body.off, frame), undefined, context.origin);
  if (failure !== undefined) {
    context.closeLater(body.tag, off);
    throw failure.error;
  }
  // The pulse ran its time: the step waits for its off write, but not past an abort (a stop, a
  // trip): then the off goes to closeLater like an aborted pulse's, so a stuck off holds the safe
  // state only when its tag is a safe-state tag (adversarial review 15s, M1).
  try {
    await raceAbort(off, context.signal);
  } catch (error) {
    if (!context.signal.aborted) throw error;
    context.closeLater(body.tag, off);
    throw context.signal.reason;
  }
  const actualMs = monotonicNow(clock) - onAt;
  context.pulseErrors.push(actualMs - planned);
  return { actualMs };
}

/**
 * `waitUntil`: resolves once the condition holds on a good, fresh sample (not stale by the
 * source-age rule, `RecipeIo.stale`); on timeout continues,
 * aborts the process or fails the step (`KILN_TIMEOUT`) as `onTimeout` says.
 */
export async function runWaitUntil(
  body: WaitUntilStep["waitUntil"],
  path: string,
  frame: Frame,
  context: StepRunContext,
): Promise<StepOutcome> {
  const { tag, op } = body.condition;
  const target = valueOf(body.condition.value, frame);
  const timeoutMs = numberOf(body.timeoutMs, frame);
  // A good sample whose source has stopped advancing (the tag's maxSourceAgeMs) shows the value of
  // then, not now: it does not meet the condition (review 15e, the interlocks' source-age rule).
  const holds = (sample: Sample | undefined): boolean =>
    sample !== undefined &&
    sample.quality.severity === "good" &&
    compare(sample.value, op, target) &&
    context.io.stale?.(tag) === undefined;
  const met = await until(tag, holds, timeoutMs, context);
  if (met) return {};
  const condition = `${tag} ${op} ${String(target)}`;
  if (body.onTimeout === "continue") return { outcome: "timeout" };
  if (body.onTimeout === "abort") {
    throw context.abort(`waitUntil ${condition} timed out after ${timeoutMs} ms at ${path}`);
  }
  throw new KilnError("KILN_TIMEOUT", `waitUntil ${condition} did not hold within ${timeoutMs} ms at ${path}.`, {
    details: { processId: context.processId, path, tag, op, value: target, timeoutMs },
  });
}

/**
 * `ramp`: writes `from`, then `steps` more values ending at `to`, each due at a fixed offset
 * from the start (slow writes do not stretch the ramp); integer tags get rounded values.
 */
export async function runRamp(body: RampStep["ramp"], frame: Frame, context: StepRunContext): Promise<StepOutcome> {
  const { clock } = context;
  const from = numberOf(body.from, frame);
  const to = numberOf(body.to, frame);
  const durationMs = numberOf(body.durationMs, frame);
  const integer = INTEGER_TYPES.has(context.catalog.get(body.tag).dataType);
  const start = monotonicNow(clock);
  for (let index = 0; index <= body.steps; index++) {
    if (index > 0) {
      const due = start + (durationMs * index) / body.steps;
      await clock.sleep(Math.max(0, due - monotonicNow(clock)), context.signal);
    }
    let value = index === body.steps ? to : from + ((to - from) * index) / body.steps;
    if (integer) value = Math.round(value);
    await context.io.write(body.tag, value, context.signal, context.origin);
  }
  return {};
}

/** A literal, or the frame's value of a `{ param }` reference. */
export function valueOf(value: RecipeValue, frame: Frame): ParameterValue {
  return isParameterRef(value) ? frame.values[value.param]! : value;
}

/** {@link valueOf} for a number validation proved numeric. */
export function numberOf(value: RecipeValue, frame: Frame): number {
  return valueOf(value, frame) as number;
}

/** Resolves true as soon as `holds` is true of the tag's current or a new sample, false after `timeoutMs`. */
function until(
  tag: string,
  holds: (sample: Sample | undefined) => boolean,
  timeoutMs: number,
  context: StepRunContext,
): Promise<boolean> {
  const { io, clock, signal } = context;
  if (holds(io.current(tag))) return Promise.resolve(true);
  return new Promise<boolean>((resolve, reject) => {
    let settled = false;
    // Filled once subscribed; a listener may fire synchronously while subscribing.
    const subscription: { dispose?: Disposer } = {};
    const settle = (finish: () => void): void => {
      if (settled) return;
      settled = true;
      subscription.dispose?.();
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      finish();
    };
    const onAbort = (): void => settle(() => reject(signal.reason));
    const timer = clock.setTimeout(() => settle(() => resolve(false)), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    subscription.dispose = io.onChange(tag, (sample) => {
      if (holds(sample)) settle(() => resolve(true));
    });
    if (settled) subscription.dispose();
    else if (signal.aborted) onAbort();
    else if (holds(io.current(tag))) settle(() => resolve(true));
  });
}

function compare(actual: Sample["value"], op: ConditionOperator, target: ParameterValue): boolean {
  if (actual === null) return false;
  const left = typeof actual === "bigint" ? Number(actual) : actual;
  switch (op) {
    case "==":
      return left === target;
    case "!=":
      return left !== target;
    case "<":
      return typeof left === "number" && left < (target as number);
    case "<=":
      return typeof left === "number" && left <= (target as number);
    case ">":
      return typeof left === "number" && left > (target as number);
    case ">=":
      return typeof left === "number" && left >= (target as number);
  }
}
