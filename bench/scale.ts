/**
 * Sizing: N tags on one 1 s scan group, every value changing every scan, logged with change
 * logging into PostgreSQL (`DATABASE_URL`) or embedded PGlite, beside a 10 ms group of 100 tags
 * whose period error shows how responsive the process stays. One JSON line per size (1k, 10k,
 * 100k; `KILN_BENCH_SCALE_TAGS=1000,10000` to choose, `KILN_BENCH_SCALE_SECONDS` per size,
 * default 60). The anchor (issue 16): a C gateway publishes 10k points at 1 s in 199 MB and 100k
 * in 497 MB. `us_per_sample` is the whole process's CPU per sample; `simulator_us_per_sample` is
 * the part SimulatedPlc takes to make the values (timed on its own after the run) and
 * `kiln_us_per_sample` the rest. `blocked_waits` counts polls that waited for room in the logging
 * pipeline (overflow `block`): a wait past the period is a skipped scan; `samples_dropped` what the
 * pipeline lost (none under `block`). `gc_pause_*` and `gc_pct` are the garbage collector's pauses
 * during the run (young generation and full collections together): a pause holds the event loop, so
 * it bounds what `event_loop_max_ms` and the 10 ms group's period error can be.
 */
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { PGlite } from "@electric-sql/pglite";
import { createControlSystem, defineTags, SimulatedPlc, type SimulatedSource } from "@kiln/core";
import { PostgresStore } from "@kiln/store-postgres";
import { machine, round } from "./harness";

const SIZES = (process.env.KILN_BENCH_SCALE_TAGS ?? "1000,10000,100000").split(",").map(Number);
const SECONDS = Number(process.env.KILN_BENCH_SCALE_SECONDS ?? 60);
const FAST_TAGS = 100;

async function measure(tagCount: number): Promise<Record<string, unknown>> {
  const rssBefore = process.memoryUsage().rss;
  const definitions: Record<string, { dataType: "float64"; scanGroup: string; logging?: { mode: "none" } }> = {};
  const sources: Record<string, SimulatedSource> = {};
  for (let i = 0; i < tagCount; i++) {
    definitions[`slow.t${i}`] = { dataType: "float64", scanGroup: "slow" };
    sources[`slow.t${i}`] = { kind: "counter", step: 1 };
  }
  for (let i = 0; i < FAST_TAGS; i++) {
    definitions[`fast.t${i}`] = { dataType: "float64", scanGroup: "fast", logging: { mode: "none" } };
    sources[`fast.t${i}`] = { kind: "sine", offset: 0, amplitude: 1, periodMs: 1_000 };
  }
  const tags = defineTags(definitions);
  const url = process.env.DATABASE_URL;
  const schema = `bench_scale_${tagCount}`;
  const pglite = url ? undefined : await PGlite.create();
  const store = url
    ? new PostgresStore({ connectionString: url, schema })
    : new PostgresStore({ pglite: pglite!, schema });
  const system = createControlSystem({
    machineId: `scale-${tagCount}`,
    tags,
    driver: new SimulatedPlc({ tags, sources }),
    store,
    scanGroups: { slow: { periodMs: 1_000 }, fast: { periodMs: 10 } },
    // Only the slow group is logged (the fast group's tags have logging "none"): it is the responsiveness probe.
    logging: { maxBatchSize: 5_000, maxBufferedSamples: Math.max(200_000, 2 * tagCount) },
  });
  await system.start();
  await system.ready();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  const before = system.health().logging;
  const rssSeries: number[] = [];
  const gcPauses: number[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcPauses.push(entry.duration);
  });
  gcObserver.observe({ entryTypes: ["gc"] });
  loop.enable();
  while (performance.now() - started < SECONDS * 1_000) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    rssSeries.push(process.memoryUsage().rss);
  }
  loop.disable();
  gcObserver.disconnect();
  gcPauses.sort((a, b) => a - b);
  const elapsedS = (performance.now() - started) / 1_000;
  const cpu = process.cpuUsage(cpuStart);
  const health = system.health();
  const slow = health.acquisition.groups.find((group) => group.name === "slow")!;
  const fast = health.acquisition.groups.find((group) => group.name === "fast")!;
  const samplesIn = health.logging.samplesIn - before.samplesIn;
  const stored = health.logging.samplesOut - before.samplesOut;
  const half = Math.floor(rssSeries.length / 2);
  const rssGrowthPerMin =
    half > 0 ? (rssSeries.at(-1)! - rssSeries[half - 1]!) / 1_048_576 / ((rssSeries.length - half) / 60) : 0;
  await system.stop();
  await pglite?.close();
  const cpuUs = cpu.user + cpu.system;
  // Before the simulator is timed on its own: its tags and samples are no part of the system's RSS.
  const rssEnd = process.memoryUsage().rss;
  const simulatorUs = await simulatorCost(tags, sources, tagCount);
  const usPerSample = cpuUs / Math.max(1, samplesIn + fast.periodError.count * FAST_TAGS);
  return {
    name: "scale",
    tags: tagCount,
    store: url ? "postgresql" : "pglite",
    seconds: round(elapsedS, 1),
    stored_per_s: round(stored / elapsedS, 0),
    samples_in_per_s: round(samplesIn / elapsedS, 0),
    skipped_scans: slow.skippedCycles,
    buffered: health.logging.buffered,
    // Samples the logging pipeline lost (nothing is dropped under the default `block` policy) and
    // the scans that waited for room in it instead (back-pressure: a wait past the period skips scans).
    samples_dropped: health.logging.samplesDropped - before.samplesDropped,
    blocked_waits: health.logging.blockedWaits - before.blockedWaits,
    cpu_pct: round((cpuUs / 1e6 / elapsedS) * 100, 1),
    rss_mb: round(rssEnd / 1_048_576, 0),
    rss_growth_mb_per_min: round(rssGrowthPerMin, 1),
    // RSS the system added (tags, tables, buffers, store client) over the process before it, per tag.
    bytes_per_tag: round((rssSeries.at(-1)! - rssBefore) / tagCount, 0),
    us_per_sample: round(usPerSample, 2),
    // Of us_per_sample, what SimulatedPlc takes to make a value (measured after the run, reading
    // every slow tag alone), and the rest: Kiln's scan, table, logging and store path.
    simulator_us_per_sample: round(simulatorUs, 2),
    kiln_us_per_sample: round(usPerSample - simulatorUs, 2),
    event_loop_p99_ms: round(loop.percentile(99) / 1e6, 1),
    event_loop_max_ms: round(loop.max / 1e6, 1),
    fast_group_p99_ms: round(fast.periodError.p99, 1),
    fast_group_max_ms: round(fast.periodError.max, 1),
    gc_pause_p99_ms: round(gcPauses[Math.floor(gcPauses.length * 0.99)] ?? 0, 1),
    gc_pause_max_ms: round(gcPauses.at(-1) ?? 0, 1),
    gc_pct: round((gcPauses.reduce((sum, pause) => sum + pause, 0) / (elapsedS * 1_000)) * 100, 1),
    machine: machine(),
  };
}

/** CPU µs per sample of `SimulatedPlc.read` over every slow tag, on its own (nothing else running). */
async function simulatorCost(
  tags: ReturnType<typeof defineTags>,
  sources: Record<string, SimulatedSource>,
  tagCount: number,
): Promise<number> {
  const plc = new SimulatedPlc({ tags, sources });
  await plc.connect();
  const slow = tags.list().filter((tag) => tag.scanGroup === "slow");
  await plc.read(slow);
  const reads = 5;
  const start = process.cpuUsage();
  for (let i = 0; i < reads; i++) await plc.read(slow);
  const cpu = process.cpuUsage(start);
  await plc.close();
  return (cpu.user + cpu.system) / (reads * tagCount);
}

export async function run(): Promise<Record<string, unknown>[]> {
  const results: Record<string, unknown>[] = [];
  for (const size of SIZES) results.push(await measure(size));
  return results;
}
