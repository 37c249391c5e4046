import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({ "seq.counter": { dataType: "uint32" } });

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-spool-lock-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const build = (spoolPath: string) =>
  simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    logging: { maxBatchSize: 10, maxBufferedSamples: 100, overflow: "spool", spoolPath },
  }).system;

test("two control systems in one process with the same spoolPath: the second start() fails with KILN_JOURNAL_LOCKED naming it, and starts once the first has stopped", async () => {
  const spoolPath = join(directory, "samples.journal");
  const first = build(spoolPath);
  const second = build(spoolPath);
  await first.start();
  const error = await second.start().catch((caught: unknown) => caught);
  expect(error).toMatchObject({ code: "KILN_JOURNAL_LOCKED", details: { path: spoolPath } });
  expect((error as Error).message).toContain(spoolPath);
  expect((error as Error).message).toContain("its own spoolPath");
  expect(second.state).toBe("stopped");
  // The refused start took nothing from the first system: it keeps running on its spool.
  expect(first.state).toBe("running");
  await first.stop();
  await second.start();
  expect(second.state).toBe("running");
  await second.stop();
});
