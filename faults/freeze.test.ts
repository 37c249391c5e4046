import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { announceSkip, clusterUnavailable, NEEDS_POSTGRES_BINARIES } from "./support/cluster";
import { report, useFaultCluster } from "./support/case";
import { countSequences, hold, startPipeline, waitFor } from "./support/pipeline";

/** The store's write timeout in these cases, in ms; every freeze lasts several times longer. */
const WRITE_TIMEOUT_MS = 1_000;
const SECOND_RUN = 1_000_000;

announceSkip("freeze cases");
describe.skipIf(clusterUnavailable !== undefined)(`PostgreSQL frozen with SIGSTOP ${NEEDS_POSTGRES_BINARIES}`, () => {
  const env = useFaultCluster();

  test('frozen longer than the write timeout under "spool", then thawed: nothing lost, nothing twice', async () => {
    const cluster = env.cluster();
    const schema = "freeze_spool";
    const pipeline = await startPipeline({
      url: cluster.url,
      schema,
      logging: {
        overflow: "spool",
        spoolPath: join(env.scratch(), "freeze.journal"),
        writeTimeoutMs: WRITE_TIMEOUT_MS,
      },
    });
    const health = () => pipeline.system.health().logging;
    const failures: unknown[] = [];
    pipeline.system.bus.on("batch-flush-fail", (event) => void failures.push(event.error));
    await waitFor("samples stored", () => health().samplesOut >= 5_000);
    const frozen = cluster.freeze();
    // Writes time out, the buffer fills, and the pipeline moves to the spool while the server is frozen.
    await waitFor("the pipeline to spool", () => health().mode === "spooling" && health().spooled >= 5_000);
    await hold(4 * WRITE_TIMEOUT_MS);
    cluster.thaw(frozen);
    await waitFor("the spool to replay", () => health().mode === "memory");
    await hold(500);
    await pipeline.system.stop();
    const final = health();
    const count = await countSequences(cluster.url, schema);
    report("freeze/spool", {
      frozen: frozen.length,
      failedWrites: failures.length,
      acquired: final.samplesIn,
      stored: count.distinct,
      spooled: final.samplesSpooled,
      dropped: final.samplesDropped,
      duplicates: count.duplicates,
    });
    expect(failures.length).toBeGreaterThan(0);
    expect(final.samplesSpooled).toBeGreaterThan(0);
    expect(count.duplicates).toBe(0);
    expect(final.samplesDropped).toBe(0);
    expect(count.distinct).toBe(final.samplesIn);
    expect(count.gaps).toBe(0);
  });

  test("stop() while the server is frozen keeps the rest in the spool; the next start replays it once", async () => {
    const cluster = env.cluster();
    const schema = "freeze_stop";
    const spoolPath = join(env.scratch(), "freeze-stop.journal");
    const logging = {
      overflow: "spool" as const,
      spoolPath,
      writeTimeoutMs: WRITE_TIMEOUT_MS,
      drainTimeoutMs: 2_000,
    };
    const first = await startPipeline({ url: cluster.url, schema, logging });
    await waitFor("samples stored", () => first.system.health().logging.samplesOut >= 5_000);
    const frozen = cluster.freeze();
    let stopped: { acquired: number; out: number; spooled: number } | undefined;
    try {
      await hold(WRITE_TIMEOUT_MS / 2);
      // Returns within drainTimeoutMs although writes hang on the frozen server (the test's own
      // timeout is the bound here; timings are not asserted).
      await first.system.stop();
      const health = first.system.health().logging;
      // After stop the spool is closed; what it holds is what was spooled and not replayed.
      stopped = {
        acquired: health.samplesIn,
        out: health.samplesOut,
        spooled: health.samplesSpooled - health.samplesReplayed,
      };
      expect(health.samplesDropped).toBe(0);
      expect(stopped.spooled).toBeGreaterThan(0);
    } finally {
      cluster.thaw(frozen);
    }

    const second = await startPipeline({ url: cluster.url, schema, logging, firstSequence: SECOND_RUN });
    const health = () => second.system.health().logging;
    await waitFor("the spool to replay", () => health().mode === "memory" && health().samplesReplayed > 0);
    await hold(500);
    await second.system.stop();
    const final = health();
    const firstRun = await countSequences(cluster.url, schema, 0, SECOND_RUN);
    const secondRun = await countSequences(cluster.url, schema, SECOND_RUN);
    report("freeze/stop", {
      ...stopped,
      replayed: final.samplesReplayed,
      firstRunStored: firstRun.distinct,
      secondRunStored: secondRun.distinct,
      duplicates: firstRun.duplicates + secondRun.duplicates,
    });
    // The replay holds the first run's spool and what the second run logged while it caught up.
    expect(final.samplesReplayed).toBeGreaterThanOrEqual(stopped!.spooled);
    expect(firstRun.duplicates + secondRun.duplicates).toBe(0);
    expect(firstRun.distinct).toBe(stopped!.acquired);
    expect(firstRun.gaps).toBe(0);
    expect(final.samplesDropped).toBe(0);
    expect(secondRun.distinct).toBe(final.samplesIn);
  });
});
