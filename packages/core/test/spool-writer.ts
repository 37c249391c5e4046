/**
 * Child process for the SIGKILL test: logs sequence-numbered samples through a SampleLogger
 * whose store always fails, so everything goes to the spool journal. After every journal
 * write it prints `spooled <total>` (the journal is fsynced before that line is printed).
 * The parent kills it with SIGKILL at an arbitrary moment.
 */
import { GOOD, type KilnEvents, SystemClock } from "@kiln/core";
import { type SampleSink } from "@kiln/core/driver-kit";
import { EventBus } from "../src/events/event-bus";
import { SampleLogger } from "../src/logging/sample-logger";
import { guardSampleSink } from "../src/compose/port-policies";
import { KilnError } from "@kiln/core";

const spoolPath = process.argv[2];
if (!spoolPath) throw new Error("usage: spool-writer <spool path>");

const clock = new SystemClock();
const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
const downStore: SampleSink = {
  sinkApiVersion: "1",
  writeBatch: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "store down", { retryable: true })),
};
const logger = new SampleLogger({
  sink: guardSampleSink(
    downStore,
    {
      timeoutMs: 100,
      retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 10, maxDelayMs: 50 },
      breaker: { failureThreshold: 2, recoveryTimeMs: 1_000 },
    },
    { clock, bus },
  ),
  clock,
  bus,
  maxBatchSize: 100,
  maxLatencyMs: 20,
  flushConcurrency: 2,
  maxBufferedSamples: 200,
  overflow: "spool",
  spoolPath,
  drainTimeoutMs: 1_000,
});

let spooled = 0;
bus.on("samples-spool", (event) => {
  spooled += event.count;
  process.stdout.write(`spooled ${spooled}\n`);
});

await logger.start();
let seq = 0;
for (;;) {
  for (let i = 0; i < 50; i++) {
    logger.append({ tag: "seq", value: seq, timestamp: 1_000_000 + seq, quality: GOOD });
    seq++;
  }
  await new Promise((resolve) => setTimeout(resolve, 2));
}
