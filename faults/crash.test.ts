import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { announceSkip, clusterUnavailable, NEEDS_POSTGRES_BINARIES } from "./support/cluster";
import { report, useFaultCluster } from "./support/case";
import { countSequences, hold, startPipeline, waitFor } from "./support/pipeline";

announceSkip("crash cases");
describe.skipIf(clusterUnavailable !== undefined)(`PostgreSQL crashes ${NEEDS_POSTGRES_BINARIES}`, () => {
  const env = useFaultCluster();

  test('crashed twice (pg_ctl stop -m immediate) under "spool": nothing lost, nothing twice', async () => {
    const cluster = env.cluster();
    const schema = "crash_spool";
    const pipeline = await startPipeline({
      url: cluster.url,
      schema,
      logging: { overflow: "spool", spoolPath: join(env.scratch(), "crash.journal") },
    });
    const health = () => pipeline.system.health().logging;
    for (let crash = 1; crash <= 2; crash++) {
      await waitFor("samples stored", () => health().samplesOut >= crash * 5_000);
      await cluster.crash();
      await waitFor("the pipeline to spool", () => health().mode === "spooling" && health().spooled >= 5_000);
      await cluster.start();
      await waitFor("the spool to replay", () => health().mode === "memory");
    }
    await hold(500);
    await pipeline.system.stop();
    const final = health();
    const count = await countSequences(cluster.url, schema);
    report("crash/spool", {
      acquired: final.samplesIn,
      stored: count.distinct,
      spooled: final.samplesSpooled,
      replayed: final.samplesReplayed,
      dropped: final.samplesDropped,
      duplicates: count.duplicates,
    });
    expect(final.samplesSpooled).toBeGreaterThan(0);
    expect(final.samplesReplayed).toBeGreaterThan(0);
    expect(count.duplicates).toBe(0);
    expect(final.samplesDropped).toBe(0);
    expect(count.distinct).toBe(final.samplesIn);
    expect(count.gaps).toBe(0);
  });

  test('crashed under "drop-oldest": lost = the samples-drop count, nothing twice', async () => {
    const cluster = env.cluster();
    const schema = "crash_drop";
    const pipeline = await startPipeline({
      url: cluster.url,
      schema,
      logging: { overflow: "drop-oldest", maxBufferedSamples: 2_000 },
    });
    const health = () => pipeline.system.health().logging;
    await waitFor("samples stored", () => health().samplesOut >= 5_000);
    await cluster.crash();
    await waitFor("the buffer to overflow", () => health().samplesDropped >= 5_000);
    await cluster.start();
    await waitFor("writes to succeed again", () => health().breaker.state.state === "closed");
    await hold(500);
    await pipeline.system.stop();
    const final = health();
    const count = await countSequences(cluster.url, schema);
    const lost = final.samplesIn - count.distinct;
    report("crash/drop-oldest", {
      acquired: final.samplesIn,
      stored: count.distinct,
      lost,
      reported: final.samplesDropped,
      events: pipeline.dropped(),
      duplicates: count.duplicates,
    });
    expect(count.duplicates).toBe(0);
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBe(final.samplesDropped);
    // samples-drop events are coalesced per latency period; the last one is published by stop().
    expect(pipeline.dropped()).toBe(final.samplesDropped);
  });
});
