import type { Sample, TimingStats } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import type { CycleStatistics } from "./ald-cycles";
import {
  formatOutage,
  type AlarmOccurrence,
  type CycleTimelineRow,
  type LinkOutage,
  type WorstPulse,
} from "./run-analysis";

/**
 * The run's audit trail in numbers (read back from the store): every command checked, by outcome, and how many of
 * them came from OPC UA clients (`--serve`; the entry's source starts with `opcua:`).
 */
export interface AuditCounts {
  readonly allowed: number;
  readonly denied: number;
  readonly failed: number;
  readonly fromOpcua: number;
}

/** Counts `entries` by outcome (see {@link AuditCounts}). */
export function auditCounts(entries: readonly AuditEntry[]): AuditCounts {
  const counts = { allowed: 0, denied: 0, failed: 0, fromOpcua: 0 };
  for (const entry of entries) {
    counts[entry.outcome]++;
    if (entry.source?.startsWith("opcua:") === true) counts.fromOpcua++;
  }
  return counts;
}

/** A breaker state change seen during the run. */
export interface BreakerEventRecord {
  readonly at: number;
  readonly breaker: string;
  readonly from: string;
  readonly to: string;
  readonly reason?: string;
}

/** An alarm activation seen during the run. */
export interface AlarmRaiseRecord {
  readonly at: number;
  readonly alarmId: string;
  readonly message: string;
  readonly value: number | boolean | null;
  /** When the demo operator acknowledged it. */
  readonly acknowledgedAt?: number;
}

/** What an ALD demo run did, as `runAldDemo` returns it and the report shows it. */
export interface AldDemoSummary {
  /** True when the recipe completed every cycle and every logged sample is in the store. */
  readonly ok: boolean;
  /** `fault`: the PLC's OPC UA server was stopped and restarted during the run. */
  readonly mode: "normal" | "fault";
  /** `pglite` (embedded, in memory) or `postgresql` (the server at the given URL). */
  readonly store: "pglite" | "postgresql";
  readonly endpointUrl: string;
  readonly process: {
    readonly id: string;
    readonly status: "completed" | "aborted" | "failed";
    readonly reason?: string;
    readonly stepsCompleted: number;
    readonly durationMs: number;
  };
  /** Cycles the recipe asked for, completed (H2O pulse done), and counted by the PLC. */
  readonly cycles: { readonly planned: number; readonly completed: number; readonly countedByPlc: number };
  /** Valve openings the simulated reactor saw. */
  readonly pulses: { readonly tma: number; readonly h2o: number };
  /**
   * The logging pipeline's counters, the rows read back from the store over the run, and
   * `lost` = samples accepted by the pipeline that are not in the store.
   */
  readonly samples: {
    readonly in: number;
    readonly out: number;
    readonly dropped: number;
    readonly stored: number;
    readonly lost: number;
    /** Stored samples whose quality was not good (the outage, in fault mode; `stale` below). */
    readonly notGood: number;
    /**
     * Of `notGood`, the staleness markers (UncertainLastUsableValue): a polled value not updated
     * within its scan group's `staleAfterPeriods` because the scan fell behind (a loaded machine;
     * the demo's store shares the event loop). Correct quality, not a communication fault.
     */
    readonly stale: number;
  };
  /** Pulse open time minus planned, ms (from the process result). */
  readonly pulseTiming: TimingStats;
  /** The pulse behind `pulseTiming.max` (from the `step-end` events), marked on the report's valve chart. */
  readonly worstPulse?: WorstPulse;
  /** Each ALD cycle's steps, their durations against their setpoints (from the `step-end` events). */
  readonly timeline: readonly CycleTimelineRow[];
  /** Wait duration minus planned, ms. */
  readonly waitTiming: TimingStats;
  /** The commands of the run as the audit trail recorded them. */
  readonly audit: AuditCounts;
  readonly alarms: {
    readonly raised: number;
    readonly acknowledged: number;
    readonly interlockTrips: number;
    readonly raises: readonly AlarmRaiseRecord[];
    /** The store's alarm history (`store.alarms.query`) paired into occurrences: raised, cleared, acknowledged, by whom. */
    readonly occurrences: readonly AlarmOccurrence[];
  };
  readonly breakerEvents: readonly BreakerEventRecord[];
  /** PLC link: losses, restorations, outages, and tag quality changes seen in the CVT. */
  readonly link: {
    readonly lost: number;
    readonly restored: number;
    /**
     * Each outage, from the `plc-connection-lose` event to the `plc-connection-restore` event
     * ({@link linkOutages}): the one outage figure the summary, the charts and the notes show.
     */
    readonly outages: readonly LinkOutage[];
    /** The sum of the outages' `durationMs`. */
    readonly downtimeMs: number;
    readonly qualityChanges: number;
    /** The reconnect backoff of the acquisition (`acquisition.reconnect`), ms: why an outage outlasts the fault. */
    readonly backoff: { readonly initialDelayMs: number; readonly maxDelayMs: number };
  };
  /** When the OPC UA server was stopped and started again (fault mode). */
  readonly fault?: { readonly stoppedAt: number; readonly restartedAt: number };
  /** The chamber pressure as the report shows it, read back through the store's history port. */
  readonly pressure: {
    /** The range read back, ms since epoch: `[from, to)`. */
    readonly range: { readonly from: number; readonly to: number };
    /** Every stored sample of the run (`samples.readSamples`). */
    readonly samples: readonly Sample[];
    /** The trend drawn: `history.downsample` (M4) of the run at `trendPoints` points. */
    readonly trend: readonly Sample[];
    /** The per-cycle table: `history.aggregate` (Minimum, Maximum, Average) over each cycle. */
    readonly cycles: readonly CycleStatistics[];
  };
  /** The HTML report written. */
  readonly reportFile: string;
  readonly startedAt: number;
  readonly durationMs: number;
}

/** The summary as aligned `label: value` lines for a terminal. */
export function formatAldSummary(summary: AldDemoSummary): string {
  return summaryItems(summary)
    .map((item) => `${item.ok === false ? "✗" : " "} ${item.label.padEnd(24)} ${item.value}`)
    .join("\n");
}

/** The summary as labelled items (`ok: false` marks a problem), shared by the terminal and the report. */
export function summaryItems(summary: AldDemoSummary): { label: string; value: string; ok?: boolean }[] {
  const { samples, alarms, pulseTiming } = summary;
  const cyclesOk = summary.cycles.completed === summary.cycles.planned;
  const items: { label: string; value: string; ok?: boolean }[] = [
    {
      label: "Process",
      value: `${summary.process.status}${summary.process.reason ? ` (${summary.process.reason})` : ""}, ${summary.process.stepsCompleted} steps in ${seconds(summary.process.durationMs)}`,
      ok: summary.process.status === "completed",
    },
    {
      label: "Cycles done",
      value: `${summary.cycles.completed} of ${summary.cycles.planned} (PLC counter ${summary.cycles.countedByPlc}, valve pulses TMA ${summary.pulses.tma} / H2O ${summary.pulses.h2o})`,
      ok: cyclesOk,
    },
    {
      label: "Samples logged",
      value: `${samples.out} of ${samples.in} written, ${samples.stored} read back from the store, ${samples.dropped} dropped, ${samples.lost} lost${samples.notGood > 0 ? ` (${samples.notGood} with quality not good, ${samples.stale} of them stale: the scan fell behind)` : ""}`,
      ok: samples.lost === 0 && samples.dropped === 0 && samples.out === samples.in,
    },
    {
      label: "Pulse timing error",
      value:
        pulseTiming.count === 0
          ? "no pulse measured"
          : `p50 ${ms(pulseTiming.p50)}, p99 ${ms(pulseTiming.p99)}, max ${ms(pulseTiming.max)} over ${pulseTiming.count} pulses${summary.worstPulse ? `; the max is the ${worstPulseText(summary.worstPulse, summary.startedAt)}, ringed on the valve chart` : ""}`,
    },
    {
      label: "Alarms",
      value: `${alarms.raised} raised, ${alarms.acknowledged} acknowledged${alarms.interlockTrips > 0 ? `, ${alarms.interlockTrips} interlock trip(s)` : ""}`,
      ok: alarms.interlockTrips === 0,
    },
    {
      label: "Commands audited",
      value: `${summary.audit.allowed} allowed, ${summary.audit.denied} denied${summary.audit.failed > 0 ? `, ${summary.audit.failed} failed` : ""}${summary.audit.fromOpcua > 0 ? ` (${summary.audit.fromOpcua} of them from OPC UA clients)` : ""}`,
    },
    {
      label: "Breaker events",
      value:
        summary.breakerEvents.length === 0
          ? "none"
          : summary.breakerEvents
              .map((event) => `${event.breaker} ${event.from}→${event.to} at ${seconds(event.at - summary.startedAt)}`)
              .join("; "),
    },
    {
      label: "PLC link",
      value:
        summary.link.lost === 0
          ? "online throughout"
          : `lost ${summary.link.lost}×, restored ${summary.link.restored}×, ${linkDownText(summary.link.outages)}, ${summary.link.qualityChanges} tag quality changes`,
      ok: summary.link.lost === summary.link.restored,
    },
  ];
  if (summary.fault) {
    items.push({
      label: "Fault injected",
      value: `OPC UA server stopped at ${seconds(summary.fault.stoppedAt - summary.startedAt)}, restarted at ${seconds(summary.fault.restartedAt - summary.startedAt)} on the same port: server down ${formatOutage(summary.fault.restartedAt - summary.fault.stoppedAt)}`,
    });
  }
  const outageNote = outageExplanation(summary);
  if (outageNote) items.push({ label: "Outage", value: outageNote });
  items.push(
    { label: "Store", value: summary.store === "pglite" ? "embedded PGlite (in memory)" : "PostgreSQL (DATABASE_URL)" },
    { label: "PLC endpoint", value: `${summary.endpointUrl} (SignAndEncrypt, Basic256Sha256)` },
    { label: "Run time", value: seconds(summary.durationMs) },
  );
  return items;
}

/** `PLC link down 3.62 s` (or `... 3.62 s + 1.05 s` for several outages): the outage figure as every place prints it. */
export function linkDownText(outages: readonly LinkOutage[]): string {
  if (outages.length === 0) return "PLC link never down";
  const open = outages.some((outage) => !outage.restored) ? " (not restored by the end of the run)" : "";
  return `PLC link down ${outages.map((outage) => formatOutage(outage.durationMs)).join(" + ")}${open}`;
}

/**
 * How the outage is measured, and why it differs from the injected server downtime: the loss is
 * seen some time after the server stops, and after the restart the link comes back at the next
 * reconnect attempt (capped exponential backoff) plus a new secure session. Undefined without an outage.
 */
export function outageExplanation(summary: AldDemoSummary): string | undefined {
  const { outages, backoff } = summary.link;
  if (outages.length === 0) return undefined;
  const parts = [
    `${linkDownText(outages)}, measured once from the plc-connection-lose event to the plc-connection-restore event (Kiln's view of the link, the same for every tag); each trace resumes at its first good sample after that, up to one scan period later.`,
  ];
  const outage = outages[0]!;
  const fault = summary.fault;
  if (fault && outages.length === 1 && outage.restored) {
    const serverDown = fault.restartedAt - fault.stoppedAt;
    const detected = outage.start - fault.stoppedAt;
    const back = outage.end - fault.restartedAt;
    parts.push(
      `The OPC UA server was down ${formatOutage(serverDown)}: the loss was seen ${signedSeconds(detected)} after the stop and the link was back ${signedSeconds(back)} after the restart, because reconnect attempts back off (${backoff.initialDelayMs} ms, doubling, at most ${backoff.maxDelayMs} ms apart), so the first attempt after the restart can come up to ${backoff.maxDelayMs} ms late, and a new SignAndEncrypt session and subscription must then be set up.`,
    );
  }
  return parts.join(" ");
}

/** `TMA pulse of cycle 7 at 12.34 s: 175.0 ms open on a 150 ms dose (+25.0 ms)`. */
export function worstPulseText(worst: WorstPulse, origin: number): string {
  const { step } = worst;
  const where = worst.cycle === undefined ? step.label : `${step.label} of cycle ${worst.cycle}`;
  const planned = step.plannedMs === undefined ? "" : ` on a ${step.plannedMs} ms dose`;
  return `${where} at ${((worst.openAt - origin) / 1_000).toFixed(2)} s: ${ms(step.actualMs)} open${planned} (${worst.errorMs >= 0 ? "+" : ""}${ms(worst.errorMs)})`;
}

function signedSeconds(value: number): string {
  return `${value >= 0 ? "" : "−"}${(Math.abs(value) / 1_000).toFixed(2)} s`;
}

function seconds(value: number): string {
  return `${(value / 1_000).toFixed(1)} s`;
}

function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}
