import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { clusterUnavailable, FaultCluster } from "./cluster";

/**
 * Registers a cluster and a scratch directory for the current test file: created before its
 * tests, destroyed after. Without PostgreSQL binaries nothing is created (the tests skip).
 */
export function useFaultCluster(): { cluster(): FaultCluster; scratch(): string } {
  let cluster: FaultCluster | undefined;
  let scratch: string | undefined;
  beforeAll(async () => {
    if (clusterUnavailable) return;
    scratch = await mkdtemp(join(tmpdir(), "kiln-faults-"));
    cluster = await FaultCluster.create();
  });
  afterAll(async () => {
    await cluster?.destroy();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });
  return {
    cluster: () => cluster!,
    scratch: () => scratch!,
  };
}

/** Prints one line of a fault case's figures (the suite's report names what each case proved). */
export function report(name: string, figures: Record<string, unknown>): void {
  console.log(
    `[faults] ${name}: ${Object.entries(figures)
      .map(([key, value]) => `${key}=${String(value)}`)
      .join(" ")}`,
  );
}
