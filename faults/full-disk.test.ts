import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { announceSkip, clusterUnavailable, NEEDS_POSTGRES_BINARIES } from "./support/cluster";
import { report, useFaultCluster } from "./support/case";
import { countSequences, hold, startPipeline, waitFor, type FaultPipeline } from "./support/pipeline";

/** Size of the small filesystem the spool lives on. */
const DISK_SIZE = "2m";
const NEEDS_TMPFS = "(needs permission to mount a tmpfs: run the fault suite as root, or with CAP_SYS_ADMIN)";

/** A 2 MiB tmpfs for the spool, or why there is none (mounting needs root). */
const disk = ((): { path: string } | { reason: string } => {
  if (clusterUnavailable) return { reason: clusterUnavailable };
  const path = mkdtempSync(join(tmpdir(), "kiln-faults-disk-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${DISK_SIZE}`, "tmpfs", path], { stdio: "pipe" });
    return { path };
  } catch (error) {
    rmSync(path, { recursive: true, force: true });
    return { reason: `mount -t tmpfs failed: ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}` };
  }
})();

afterAll(() => {
  if (!("path" in disk)) return;
  execFileSync("umount", [disk.path]);
  rmSync(disk.path, { recursive: true, force: true });
});

/** Runs the pipeline through an outage long enough to fill the spool, then lets it recover. */
async function outageUntilFull(
  pipeline: FaultPipeline,
  crash: () => Promise<void>,
  restart: () => Promise<void>,
): Promise<void> {
  const health = () => pipeline.system.health().logging;
  await waitFor("samples stored", () => health().samplesOut >= 5_000);
  await crash();
  await waitFor("the spool to refuse samples", () => health().samplesDropped > 0);
  await hold(1_000); // keeps acquiring into the full spool
  await restart();
  await waitFor("the spool to replay and the pipeline to leave spooling", () => health().mode === "memory");
  const out = health().samplesOut;
  await waitFor("new samples to be stored directly", () => health().samplesOut >= out + 2_000);
  await pipeline.system.stop();
}

announceSkip("full-disk cases");
describe.skipIf(clusterUnavailable !== undefined)(`The spool on a full disk ${NEEDS_POSTGRES_BINARIES}`, () => {
  const env = useFaultCluster();

  test.skipIf(!("path" in disk))(
    `the spool on a ${DISK_SIZE} tmpfs hits ENOSPC during an outage: lost = reported, nothing twice, no crash ${NEEDS_TMPFS}`,
    async () => {
      const cluster = env.cluster();
      const schema = "disk_enospc";
      const pipeline = await startPipeline({
        url: cluster.url,
        schema,
        logging: { overflow: "spool", spoolPath: join((disk as { path: string }).path, "samples.journal") },
      });
      await outageUntilFull(
        pipeline,
        () => cluster.crash(),
        () => cluster.start(),
      );
      const final = pipeline.system.health().logging;
      const count = await countSequences(cluster.url, schema);
      const lost = final.samplesIn - count.distinct;
      const reasons = [...new Set(pipeline.drops.map((drop) => drop.reason))];
      report("disk/enospc", {
        acquired: final.samplesIn,
        stored: count.distinct,
        spooled: final.samplesSpooled,
        lost,
        reported: final.samplesDropped,
        events: pipeline.dropped(),
        corrupt: final.spoolCorruptRecords,
        duplicates: count.duplicates,
        reasons: reasons.join("|"),
      });
      expect(reasons.some((reason) => reason.includes("ENOSPC"))).toBe(true);
      expect(count.duplicates).toBe(0);
      expect(lost).toBeGreaterThan(0);
      expect(lost).toBe(final.samplesDropped);
      expect(pipeline.dropped()).toBe(final.samplesDropped);
      // Nothing counted as spooled was torn: every record written reads back.
      expect(final.spoolCorruptRecords).toBe(0);
      expect(final.samplesReplayed).toBe(final.samplesSpooled);
    },
  );

  if (!("path" in disk)) console.log(`[faults] ENOSPC case skipped: ${disk.reason} ${NEEDS_TMPFS}`);

  test("the spool at its size limit (spoolMaxBytes) during an outage: lost = reported, nothing twice", async () => {
    const cluster = env.cluster();
    const schema = "disk_limit";
    const pipeline = await startPipeline({
      url: cluster.url,
      schema,
      logging: {
        overflow: "spool",
        spoolPath: join(env.scratch(), "limited.journal"),
        spoolMaxBytes: 1024 * 1024,
      },
    });
    await outageUntilFull(
      pipeline,
      () => cluster.crash(),
      () => cluster.start(),
    );
    const final = pipeline.system.health().logging;
    const count = await countSequences(cluster.url, schema);
    const lost = final.samplesIn - count.distinct;
    report("disk/limit", {
      acquired: final.samplesIn,
      stored: count.distinct,
      spooled: final.samplesSpooled,
      lost,
      reported: final.samplesDropped,
      events: pipeline.dropped(),
      duplicates: count.duplicates,
    });
    expect(pipeline.drops.every((drop) => drop.reason === "spool full")).toBe(true);
    expect(count.duplicates).toBe(0);
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBe(final.samplesDropped);
    expect(pipeline.dropped()).toBe(final.samplesDropped);
    expect(final.samplesReplayed).toBe(final.samplesSpooled);
  });
});
