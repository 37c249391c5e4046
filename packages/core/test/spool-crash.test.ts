import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, test } from "vitest";
import { type KilnEvents, MemoryStore } from "@kiln/core";
import { EventBus } from "../src/events/event-bus";
import { SampleLogger } from "../src/logging/sample-logger";
import { guardSampleSink } from "../src/compose/port-policies";
import { SimulatedClock } from "@kiln/core/testing";

const here = dirname(fileURLToPath(import.meta.url));
let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-crash-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** Runs the writer until it has spooled at least `target` samples, then SIGKILLs it mid-run. */
function runAndKill(spoolPath: string, target: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--conditions=@kiln/source", "--import", "tsx", join(here, "spool-writer.ts"), spoolPath],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let confirmed = 0;
    let stderr = "";
    let buffer = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        const match = /^spooled (\d+)$/.exec(line);
        if (match) confirmed = Number(match[1]);
      }
      if (confirmed >= target && !child.killed) child.kill("SIGKILL");
    });
    child.on("exit", (_code, signal) => {
      if (signal === "SIGKILL") resolve(confirmed);
      else reject(new Error(`writer exited without being killed: ${stderr}`));
    });
  });
}

test("a process killed with SIGKILL loses nothing that reached the spool; a restart replays it once", async () => {
  const spoolPath = join(directory, "samples.journal");
  const confirmed = await runAndKill(spoolPath, 3_000);
  expect(confirmed).toBeGreaterThanOrEqual(3_000);

  const clock = new SimulatedClock({ start: 0 });
  const store = new MemoryStore({ clock });
  await store.open([]);
  const bus = new EventBus<KilnEvents>();
  const logger = new SampleLogger({
    sink: guardSampleSink(
      store.samples,
      {
        timeoutMs: 1_000,
        retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 10, maxDelayMs: 100 },
        breaker: { failureThreshold: 5, recoveryTimeMs: 1_000 },
      },
      { clock, bus },
    ),
    clock,
    bus,
    maxBatchSize: 500,
    maxLatencyMs: 100,
    flushConcurrency: 2,
    maxBufferedSamples: 1_000,
    overflow: "spool",
    spoolPath,
    drainTimeoutMs: 5_000,
  });
  await logger.start();
  for (let step = 0; step < 2_000 && logger.health().mode !== "memory"; step++) {
    await clock.advance(10);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await logger.stop();
  await store.open([]);

  const stored = await store.samples.readSamples({
    tag: "seq",
    from: 0,
    to: Number.MAX_SAFE_INTEGER,
    limit: 1_000_000,
  });
  const values = stored.map((sample) => sample.value as number);
  // Everything confirmed before the kill is there, contiguous from 0, each exactly once.
  expect(values.length).toBeGreaterThanOrEqual(confirmed);
  expect(values).toEqual(Array.from({ length: values.length }, (_, index) => index));
  expect(logger.health().samplesReplayed).toBe(values.length);
}, 60_000);
