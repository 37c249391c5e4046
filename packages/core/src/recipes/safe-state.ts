import { KilnError, KilnValidationError, type ValidationIssue } from "../domain/errors";
import { frozenTagValue, tagValueProblem, type TagCatalog, type TagValue } from "../domain/tags";
import type { Logger } from "../ports/logger";
import type { ProcessProblem } from "./recipe-process";
import type { SafeWriteReservation } from "../compose/checked-write";
import type { RecipeIo, WriteOrigin } from "./recipe-io";

/** One write of a machine's safe state. */
export interface SafeStateWrite {
  /** A writable tag of the catalog. */
  readonly tag: string;
  /** The value that makes it safe (a closed valve, a zero setpoint). */
  readonly value: TagValue;
}

/**
 * The problems of a machine's safe state against its catalog, each naming its entry under `path`
 * (`machine.safeState` for the control system's options, `safeState` for the recipe executor's):
 * an unknown or read-only tag (`<path>[1].tag`), a value that does not fit its tag, checked like
 * any write of it (`<path>[1].value`, an array tag's element `<path>[1].value[3]`), and a tag
 * listed again (`<path>[3].tag`): each tag at most once, so what it must end with is one value
 * (adversarial review 15m, M2; ADR 0042, amendment 15n). The one place these rules live.
 */
export function safeStateIssues(
  catalog: TagCatalog,
  writes: readonly SafeStateWrite[],
  path = "safeState",
): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const first = new Map<string, number>();
  writes.forEach((write, index) => {
    const tag = catalog.find(write.tag);
    const seen = first.get(write.tag);
    if (tag === undefined) issues.push({ path: `${path}[${index}].tag`, message: `unknown tag "${write.tag}"` });
    else if (tag.access !== "readwrite") {
      issues.push({ path: `${path}[${index}].tag`, message: `tag "${write.tag}" is read-only` });
    } else if (seen !== undefined) {
      issues.push({
        path: `${path}[${index}].tag`,
        message: `tag "${write.tag}" is already in the safe state at ${path}[${seen}]: list each tag once, with the one value it must end with`,
      });
    } else {
      first.set(write.tag, index);
      const problem = tagValueProblem(tag, write.value);
      if (problem !== undefined) {
        const element = problem.element === undefined ? "" : `[${problem.element}]`;
        issues.push({ path: `${path}[${index}].value${element}`, message: problem.message });
      }
    }
  });
  return issues;
}

/**
 * Checks a machine's safe state against its catalog (see {@link safeStateIssues}) and returns a
 * frozen copy.
 * @throws KilnValidationError (`KILN_VALIDATION`) when a write names an unknown or read-only
 * tag, a value that does not fit it, or a tag listed before (paths `safeState[1].tag`).
 */
export function checkSafeState(catalog: TagCatalog, writes: readonly SafeStateWrite[]): readonly SafeStateWrite[] {
  const issues = safeStateIssues(catalog, writes);
  if (issues.length > 0) throw new KilnValidationError("recipe executor options", issues);
  return Object.freeze(writes.map((write) => Object.freeze({ ...write, value: frozenTagValue(write.value) })));
}

/**
 * Writes the safe state, in order, each write attempted even when an earlier one fails (and
 * without an abort signal: it must complete). Resolves with the writes that failed.
 *
 * A write whose tag has writes in flight (by any writer: a process's steps, an operator, a
 * pulse's off; `io.settled(tag)`) is deferred until they settle (each bounded by the driver's
 * write timeout), so the safe value lands last, and never holds back the writes after it; later
 * safe-state writes to the same tag follow it, in order. A write with nothing to wait for goes
 * out at once, so a stuck write to a tag the safe state does not write delays nothing
 * (adversarial reviews 15u, 15s; ADR 0042).
 *
 * `joined` collects the tags whose write joined a safe-state write of the same value still
 * waiting for its answer (the writer sent no call of its own; fix15s).
 *
 * `halt` (the control system's `stop()` out of its budget; fix15z, adv15y H2): once it aborts,
 * nothing more is sent and nothing more awaited: every write not answered yet is a problem at
 * once (`KILN_ABORTED`, `details: { tag, halted: true, sent }`: `sent` true when its call is
 * still out and the device may yet take it), so the caller records its outcome while it can.
 */
export async function writeSafeState(
  io: RecipeIo,
  writes: readonly SafeStateWrite[],
  logger: Logger,
  origin?: WriteOrigin,
  joined?: string[],
  halt?: AbortSignal,
): Promise<ProcessProblem[]> {
  const problems: ProcessProblem[] = [];
  const halting = halted(halt);
  const failed = (tag: string, error: unknown): void => {
    problems.push({ stage: "safe-state", tag, error });
    logger.error({ tag, error }, "a safe-state write failed");
  };
  const writeOne = async (write: SafeStateWrite, reservation: SafeWriteReservation | undefined): Promise<void> => {
    if (halt?.aborted === true) {
      reservation?.release();
      failed(write.tag, haltedError(write.tag, false, halt.reason));
      return;
    }
    const sent = io.write(write.tag, write.value, undefined, origin, reservation).then(
      () => undefined,
      (error: unknown) => {
        reservation?.release();
        return { error };
      },
    );
    const outcome = await (halting === undefined ? sent : Promise.race([sent, halting.aborted]));
    if (reservation?.joined === true) joined?.push(write.tag);
    if (outcome === HALTED) {
      failed(write.tag, haltedError(write.tag, true, halt?.reason));
      // Its answer comes after the caller stopped waiting: logged, not lost.
      void sent.then((late) => {
        if (late !== undefined) logger.error({ tag: write.tag, error: late.error }, "a halted safe-state write failed");
      });
    } else if (outcome !== undefined) failed(write.tag, outcome.error);
  };
  try {
    // Every write is announced first, before any is deferred or awaited: from now on a late landing
    // of an older value is answered by the safe state's write, never by writing the older value
    // again (review 15k, H2).
    const reserved = writes.map((write) => io.reserveSafeWrite?.(write.tag, write.value));
    // By tag: the deferred writes, chained so that writes to one tag keep their order.
    const deferred = new Map<string, Promise<void>>();
    for (const [index, write] of writes.entries()) {
      const reservation = reserved[index];
      // A write that joins the tag's pending safe write of the same value goes at once: deferring it
      // until the tag settles would wait for the very write it joins (fix15s).
      const wait = reservation?.joinable === true ? undefined : (deferred.get(write.tag) ?? io.settled?.(write.tag));
      if (wait === undefined) await writeOne(write, reservation);
      else {
        // A halt ends the wait: the write is then not sent (writeOne sees the halt).
        const waited = halting === undefined ? wait : Promise.race([wait, halting.aborted]);
        deferred.set(
          write.tag,
          waited.then(() => writeOne(write, reservation)),
        );
      }
    }
    await Promise.all(deferred.values());
    return problems;
  } finally {
    halting?.dispose();
  }
}

const HALTED = Symbol("halted");

/** Resolves with {@link HALTED} once `signal` aborts; `dispose` removes its listener. */
function halted(signal: AbortSignal | undefined): { aborted: Promise<typeof HALTED>; dispose(): void } | undefined {
  if (signal === undefined) return undefined;
  let onAbort = (): void => undefined;
  const aborted = new Promise<typeof HALTED>((resolve) => {
    onAbort = () => resolve(HALTED);
    if (signal.aborted) resolve(HALTED);
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  return { aborted, dispose: () => signal.removeEventListener("abort", onAbort) };
}

function haltedError(tag: string, sent: boolean, reason: unknown): KilnError {
  const why = typeof reason === "string" ? reason : "the safe state was halted";
  return new KilnError(
    "KILN_ABORTED",
    sent
      ? `safe state not confirmed on ${tag}: ${why} while its write was still out; the device may yet take it, or not`
      : `safe state not written on ${tag}: ${why} before its write was sent`,
    { details: { tag, halted: true, sent } },
  );
}
