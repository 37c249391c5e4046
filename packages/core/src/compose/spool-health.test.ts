import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { RecordJournal } from "../journal/record-journal";
import { simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({ "seq.counter": { dataType: "uint32" } });

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-spool-health-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

test("a spool record that cannot be read back shows in health().problems, saying its samples are lost and how many is unknown", async () => {
  const spoolPath = join(directory, "samples.journal");
  const { journal } = await RecordJournal.open(spoolPath);
  await journal.append(Buffer.from(JSON.stringify({ not: "a batch" })));
  await journal.close();
  const { system, clock } = simulatedSystem({
    tags,
    sources: { "seq.counter": { kind: "counter" } },
    logging: { overflow: "spool", spoolPath },
  });
  const skips: number[] = [];
  system.bus.on("spool-record-skip", (event) => void skips.push(event.records));
  await system.start();
  for (let step = 0; step < 50 && system.health().logging.mode !== "memory"; step++) {
    await clock.advance(10);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const health = system.health();
  expect(health.logging).toMatchObject({ mode: "memory", spoolCorruptRecords: 1, samplesDropped: 0 });
  expect(health.status).toBe("degraded");
  expect(health.problems).toContain("1 corrupt spool records skipped: their samples are lost (how many is unknown)");
  expect(skips).toEqual([1]);
  await system.stop();
});
