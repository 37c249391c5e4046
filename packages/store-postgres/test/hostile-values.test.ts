import { createControlSystem, defineTags, SimulatedPlc, type KilnEvents, type Sample, type TagValue } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { TARGETS, useTarget } from "./support/database";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const units = (value: unknown): number[] => [...String(value)].map((unit) => unit.charCodeAt(0));

/**
 * Runs a whole pipeline (simulated PLC, acquisition, logger, PostgresStore) over `values`, each
 * set on `tag` in turn for a few scans, and returns what was stored per tag and what was dropped.
 */
async function runPipeline(
  target: ReturnType<typeof useTarget>,
  definitions: Parameters<typeof defineTags>[0],
  tag: string,
  values: readonly TagValue[],
): Promise<{ stored: Map<string, Sample[]>; drops: KilnEvents["samples-drop"][]; out: number }> {
  const tags = defineTags(definitions);
  const store = target.create();
  const plc = new SimulatedPlc({
    tags,
    sources: { "line.flow": { kind: "sine", amplitude: 5, offset: 10, periodMs: 1000 } },
  });
  plc.set(tag, values[0]!);
  const system = createControlSystem({
    machineId: "hostile-values",
    tags,
    driver: plc,
    store,
    scanGroups: { default: { periodMs: 10, staleAfterPeriods: 0 } },
    logging: { maxBatchSize: 50, maxLatencyMs: 30 },
  });
  const drops: KilnEvents["samples-drop"][] = [];
  system.bus.on("samples-drop", (event) => void drops.push(event));
  await system.start();
  for (const value of values) {
    plc.set(tag, value);
    await sleep(60);
  }
  await sleep(100);
  await system.stop();
  const out = system.health().logging.samplesOut;
  await store.open(tags.list());
  const stored = new Map<string, Sample[]>();
  for (const name of tags.names) {
    stored.set(name, await store.samples.readSamples({ tag: name, from: 0, to: Date.now() + 60_000, limit: 100_000 }));
  }
  return { stored, drops, out };
}

for (const { kind, title, skip } of TARGETS) {
  describe.skipIf(skip)(`hostile values through a whole pipeline ${title}`, () => {
    const target = useTarget(kind);

    test('(issue 14 1a) "LOT-42" and six NULs beside a float and a uint32 tag: every sample stored, the string equal', async () => {
      const lot = "LOT-42\0\0\0\0\0\0";
      const { stored, drops, out } = await runPipeline(
        target,
        {
          "line.lot": { dataType: "string" },
          "line.flow": { dataType: "float64" },
          "line.count": { dataType: "uint32" },
        },
        "line.lot",
        [lot, "LOT-43\0", lot],
      );
      expect(drops).toEqual([]);
      const lots = stored.get("line.lot")!;
      expect(lots.map((sample) => units(sample.value))).toEqual([lot, "LOT-43\0", lot].map(units));
      expect(stored.get("line.flow")!.length).toBeGreaterThan(5);
      expect(stored.get("line.count")!.length).toBeGreaterThan(0);
      expect([...stored.values()].reduce((sum, samples) => sum + samples.length, 0)).toBe(out);
    });

    test("(issue 14 1b) a uint64 counter at 9223372036854775813 (above int64) is stored and read back", async () => {
      const { stored, drops } = await runPipeline(
        target,
        { HR40: { dataType: "uint64" }, "line.flow": { dataType: "float64" } },
        "HR40",
        [9223372036854775813n, 9223372036854775814n],
      );
      expect(drops).toEqual([]);
      expect(stored.get("HR40")!.map((sample) => sample.value)).toEqual([9223372036854775813n, 9223372036854775814n]);
    });

    test("a UTF-16 string register cut mid-pair (lone surrogates) and uint64 2^64-1 and 0 are all stored", async () => {
      const { stored, drops } = await runPipeline(
        target,
        { "line.label": { dataType: "string" }, "line.flow": { dataType: "float64" } },
        "line.label",
        ["batch \uD83D", "\uDE00 end", "\u0010 escape"],
      );
      expect(drops).toEqual([]);
      expect(stored.get("line.label")!.map((sample) => units(sample.value))).toEqual(
        ["batch \uD83D", "\uDE00 end", "\u0010 escape"].map(units),
      );
      const limits = await runPipeline(
        target,
        { "ctr.u": { dataType: "uint64" }, "line.flow": { dataType: "float64" } },
        "ctr.u",
        [2n ** 64n - 1n, 0n],
      );
      expect(limits.drops).toEqual([]);
      // 0 fits a number exactly, so the driver kit's type rule (coerceToTagType) hands it over as one.
      expect(limits.stored.get("ctr.u")!.map((sample) => sample.value)).toEqual([2n ** 64n - 1n, 0]);
    });
  });
}
