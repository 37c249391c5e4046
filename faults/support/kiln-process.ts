/**
 * A Kiln process for the SIGKILL case: the fault pipeline (spool policy) against the database
 * given on the command line. Prints `health <json>` (the logging counters) every 50 ms and after
 * every spool write; on SIGTERM it stops the system, prints `final <json>` and exits 0.
 *
 * Usage: kiln-process.ts <url> <schema> <spool path> <first sequence number>
 */
import { startPipeline } from "./pipeline";

const [url, schema, spoolPath, firstSequence] = process.argv.slice(2);
if (!url || !schema || !spoolPath || firstSequence === undefined) {
  throw new Error("usage: kiln-process.ts <url> <schema> <spool path> <first sequence number>");
}

const pipeline = await startPipeline({
  url,
  schema,
  logging: { overflow: "spool", spoolPath },
  firstSequence: Number(firstSequence),
});

function print(kind: "health" | "final"): void {
  const { flushLatency: _latency, breaker: _breaker, ...counters } = pipeline.system.health().logging;
  process.stdout.write(`${kind} ${JSON.stringify(counters)}\n`);
}

// A spool write is fsynced before its event is published, so a printed count is durable.
pipeline.system.bus.on("samples-spool", () => print("health"));
const timer = setInterval(() => print("health"), 50);
process.once("SIGTERM", () => {
  clearInterval(timer);
  void pipeline.system.stop().then(() => {
    print("final");
    process.exit(0);
  });
});
