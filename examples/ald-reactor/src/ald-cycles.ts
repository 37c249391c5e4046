import type { AggregateValue, HistoryQueries } from "@kiln/core/driver-kit";
import type { ReportPhase } from "./report";

/** One ALD cycle's time window, ms since epoch: `[start, end)`. */
export interface CycleWindow {
  /** 1, 2, ... in run order. */
  readonly cycle: number;
  readonly start: number;
  readonly end: number;
}

/** A cycle's chamber pressure statistics, computed by the store (`history.aggregate`). */
export interface CycleStatistics extends CycleWindow {
  readonly minimum: AggregateValue;
  readonly maximum: AggregateValue;
  readonly average: AggregateValue;
}

const IN_CYCLE = new Set(["tma", "h2o", "purge"]);

/**
 * The cycles of a run from its recipe steps as they ran (the `step-start`/`step-end` phases): a
 * cycle starts with a TMA pulse and runs through the H2O pulse and purges that follow it, up to
 * the next TMA pulse or any other step (the purge hold, the end of the run).
 */
export function cycleWindows(phases: readonly ReportPhase[]): CycleWindow[] {
  const windows: CycleWindow[] = [];
  let open: { start: number; end: number } | undefined;
  const close = (): void => {
    if (open && open.end > open.start) windows.push({ cycle: windows.length + 1, ...open });
    open = undefined;
  };
  for (const phase of [...phases].sort((a, b) => a.start - b.start)) {
    if (phase.kind === "tma") {
      close();
      open = { start: phase.start, end: phase.end };
    } else if (open && IN_CYCLE.has(phase.kind)) open.end = Math.max(open.end, phase.end);
    else close();
  }
  close();
  return windows;
}

/**
 * Minimum, maximum and average of `tag` over each cycle: one `history.aggregate` call per cycle,
 * with the cycle as its single interval (cycles differ in length by the recipe's real timing).
 */
export async function cycleStatistics(
  history: HistoryQueries,
  tag: string,
  windows: readonly CycleWindow[],
): Promise<CycleStatistics[]> {
  const statistics: CycleStatistics[] = [];
  for (const window of windows) {
    const [interval] = await history.aggregate([tag], {
      start: window.start,
      end: window.end,
      intervalMs: window.end - window.start,
      aggregates: ["Minimum", "Maximum", "Average"],
    });
    const { Minimum, Maximum, Average } = interval!.values;
    statistics.push({ ...window, minimum: Minimum!, maximum: Maximum!, average: Average! });
  }
  return statistics;
}
