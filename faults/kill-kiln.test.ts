import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SampleLoggerHealth } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { announceSkip, clusterUnavailable, NEEDS_POSTGRES_BINARIES } from "./support/cluster";
import { report, useFaultCluster } from "./support/case";
import { countSequences } from "./support/pipeline";
import { ReportingProcess } from "./support/reporting-process";

type Counters = Omit<SampleLoggerHealth, "flushLatency" | "breaker">;

const script = fileURLToPath(new URL("support/kiln-process.ts", import.meta.url));
const SECOND_RUN = 1_000_000;

/** A Kiln child process and the last counters it printed. */
class KilnProcess extends ReportingProcess<Counters> {
  constructor(args: readonly string[]) {
    super("the Kiln process", script, args);
  }
}

announceSkip("Kiln process kill case");
describe.skipIf(clusterUnavailable !== undefined)(`The Kiln process killed ${NEEDS_POSTGRES_BINARIES}`, () => {
  const env = useFaultCluster();

  test("SIGKILL of Kiln while PostgreSQL is down: a restart replays the spool; every durable sample stored once", async () => {
    const cluster = env.cluster();
    const schema = "kill_kiln";
    const spoolPath = join(env.scratch(), "kill.journal");

    const first = new KilnProcess([cluster.url, schema, spoolPath, "0"]);
    await first.until("samples stored", (health) => health.samplesOut >= 5_000);
    await cluster.crash();
    await first.until("samples spooled", (health) => health.mode === "spooling" && health.spooled >= 10_000);
    // What the process had confirmed as stored or spooled (fsynced) before it was killed.
    const confirmed = first.last!;
    first.child.kill("SIGKILL");
    expect((await first.exited).signal).toBe("SIGKILL");
    await cluster.start();

    const second = new KilnProcess([cluster.url, schema, spoolPath, String(SECOND_RUN)]);
    await second.until(
      "the spool to replay",
      (health) => health.mode === "memory" && health.samplesReplayed >= confirmed.spooled,
    );
    await second.until("new samples stored", (health) => health.samplesOut >= health.samplesReplayed + 2_000);
    second.child.kill("SIGTERM");
    expect((await second.exited).code, second.stderr).toBe(0);
    const final = second.final!;

    const firstRun = await countSequences(cluster.url, schema, 0, SECOND_RUN);
    const secondRun = await countSequences(cluster.url, schema, SECOND_RUN);
    report("kill-kiln", {
      confirmedStored: confirmed.samplesOut,
      confirmedSpooled: confirmed.samplesSpooled,
      confirmedReplayed: confirmed.samplesReplayed,
      acquiredBeforeKill: confirmed.samplesIn,
      firstRunStored: firstRun.distinct,
      replayed: final.samplesReplayed,
      secondRunAcquired: final.samplesIn,
      secondRunStored: secondRun.distinct,
      duplicates: firstRun.duplicates + secondRun.duplicates,
    });
    expect(firstRun.duplicates + secondRun.duplicates).toBe(0);
    // Everything the first process had stored or made durable in the spool is there, each tag's
    // sequence without a gap: only what was still in memory at the kill is missing. Samples it
    // spooled and then replayed (the first moments of a start with a spool go to the spool while
    // the store opens) count in both samplesSpooled and samplesOut, once in the store.
    expect(firstRun.distinct).toBeGreaterThanOrEqual(
      confirmed.samplesOut + confirmed.samplesSpooled - confirmed.samplesReplayed,
    );
    expect(firstRun.gaps).toBe(0);
    expect(final.spoolCorruptRecords).toBe(0);
    expect(final.samplesDropped).toBe(0);
    expect(secondRun.distinct).toBe(final.samplesIn);
    expect(secondRun.gaps).toBe(0);
  });
});
