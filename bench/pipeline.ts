/**
 * Logging pipeline throughput: 1,000 tags read from a SimulatedPlc, through the current value
 * table, the deadband filter and the batcher into MemoryStore, counted when committed. The
 * baseline reads the same PLC and pushes the same samples into an array, in the same run.
 * Also reports heap growth between two equal halves of the run (flat = no leak).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { defineTags, type KilnEvents, MemoryStore, type Sample, SimulatedPlc, SystemClock } from "@kiln/core";
import { type SampleSink } from "@kiln/core/driver-kit";
import { CurrentValueTable } from "../packages/core/src/cvt/current-value-table";
import { EventBus } from "../packages/core/src/events/event-bus";
import { LoggingFilter } from "../packages/core/src/logging/logging-filter";
import { SampleLogger } from "../packages/core/src/logging/sample-logger";
import { guardSampleSink } from "../packages/core/src/compose/port-policies";
import { machine, round } from "./harness";

const TAGS = 1_000;
const CYCLES = 400;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

async function kilnRun(
  cycles: number,
  heap: number[],
  sinkKind: "memory-store" | "counting" = "memory-store",
): Promise<{ samplesPerSecond: number; committed: number }> {
  const definitions = Object.fromEntries(
    Array.from({ length: TAGS }, (_, index) => [`line.tag${index}`, { dataType: "float64" as const }]),
  );
  const tags = defineTags(definitions);
  const list = tags.list();
  const clock = new SystemClock();
  const plc = new SimulatedPlc({
    tags,
    clock,
    sources: Object.fromEntries(list.map((tag) => [tag.name, { kind: "counter" as const }])),
  });
  const store = new MemoryStore({ clock });
  await store.open(list);
  // The counting sink keeps nothing, so heap growth measures the pipeline alone.
  const sink: SampleSink =
    sinkKind === "memory-store" ? store.samples : { sinkApiVersion: "1", writeBatch: () => Promise.resolve() };
  const bus = new EventBus<KilnEvents>();
  const cvt = new CurrentValueTable({ tags: list });
  const filter = new LoggingFilter(list, clock);
  const logger = new SampleLogger({
    sink: guardSampleSink(
      sink,
      {
        timeoutMs: 10_000,
        retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 10, maxDelayMs: 100 },
        breaker: { failureThreshold: 5, recoveryTimeMs: 1_000 },
      },
      { clock, bus },
    ),
    clock,
    bus,
    maxBatchSize: 5_000,
    maxLatencyMs: 50,
    flushConcurrency: 2,
    maxBufferedSamples: 200_000,
    overflow: "block",
    drainTimeoutMs: 30_000,
  });
  await logger.start();
  cvt.observeAll((change) => {
    const logged = filter.select(change.sample);
    if (logged) logger.append(logged);
  });
  await plc.connect();
  const start = performance.now();
  for (let cycle = 0; cycle < cycles; cycle++) {
    if (cycle === cycles / 4 || cycle === (3 * cycles) / 4) heap.push(heapAfterGc());
    const room = logger.reserveRoom(list.length);
    if (room.ready) await room.ready;
    const samples = await plc.read(list);
    cvt.update(samples, clock.now());
    room.release();
    // Let flushes interleave with acquisition as they would between scans.
    if (cycle % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
  }
  await logger.stop();
  const seconds = (performance.now() - start) / 1_000;
  const committed = logger.health().samplesOut;
  return { samplesPerSecond: committed / seconds, committed };
}

async function baselineRun(cycles: number): Promise<number> {
  const definitions = Object.fromEntries(
    Array.from({ length: TAGS }, (_, index) => [`line.tag${index}`, { dataType: "float64" as const }]),
  );
  const tags = defineTags(definitions);
  const list = tags.list();
  const plc = new SimulatedPlc({
    tags,
    sources: Object.fromEntries(list.map((tag) => [tag.name, { kind: "counter" as const }])),
  });
  await plc.connect();
  const sink: Sample[] = [];
  const start = performance.now();
  for (let cycle = 0; cycle < cycles; cycle++) {
    const samples = await plc.read(list);
    for (const sample of samples) sink.push(sample);
  }
  const seconds = (performance.now() - start) / 1_000;
  return sink.length / seconds;
}

export async function run(): Promise<Record<string, unknown>> {
  await kilnRun(50, []); // warm-up
  await baselineRun(50);
  const kiln = await kilnRun(CYCLES, []);
  const baseline = await baselineRun(CYCLES);
  const heap: number[] = [];
  await kilnRun(CYCLES * 2, heap, "counting");
  const [quarter = 0, threeQuarters = 0] = heap;
  return {
    name: "pipeline",
    unit: "samples/s",
    kiln: Math.round(kiln.samplesPerSecond),
    baseline: Math.round(baseline),
    ratio: round(kiln.samplesPerSecond / baseline),
    tags: TAGS,
    samples: kiln.committed,
    target: 500_000,
    // Heap after GC at 1/4 and 3/4 of a run into a sink that keeps nothing: flat means no leak.
    heap_growth_mb: round((threeQuarters - quarter) / 1_048_576, 2),
    ...machine(),
  };
}
