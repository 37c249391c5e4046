import { expect, test } from "vitest";
import type { Sample } from "../domain/sample";
import { defineTags, type Tag } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { createControlSystem } from "./create-control-system";

// Adversarial review 20u, finding 2: a driver that does not use the quality helpers sent severity
// "good" with BadDeviceFailure. The sample was shown Good live and refused by the store
// (samples-drop), so history had a gap where the live view had a good value. The current value
// table makes the quality consistent once, for everything downstream.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", logging: { mode: "change" } },
  "chamber.valve": { dataType: "bool", logging: { mode: "change" } },
});

/** A driver whose samples carry the quality `lie` (not made with Kiln's quality helpers). */
class LyingPlc extends SimulatedPlc {
  constructor(
    clock: SimulatedClock,
    readonly lie: Record<string, unknown>,
  ) {
    super({ tags, clock, sources: { "chamber.pressure": { kind: "constant", value: 2.5 } } });
  }
  override async read(asked: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    const samples = await super.read(asked, signal);
    return samples.map((sample) => ({
      ...sample,
      quality: (this.lie[sample.tag] ?? sample.quality) as Sample["quality"],
    }));
  }
}

test("a driver's good sample with a bad status code is shown bad and stored as shown, nothing dropped", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const plc = new LyingPlc(clock, {
    "chamber.pressure": { severity: "good", code: 0x808b0000 },
    "chamber.valve": { severity: "weird", code: 0 },
  });
  const store = new MemoryStore({ clock });
  const system = createControlSystem({ machineId: "ald-1", tags, driver: plc, store, clock });
  const drops: unknown[] = [];
  system.bus.on("samples-drop", (event) => void drops.push(event));
  await system.start();
  await clock.advance(3_000);
  const live = system.read("chamber.pressure")!;
  expect(live.quality).toMatchObject({ severity: "bad", code: 0x808b0000 });
  expect(system.read("chamber.valve")!.quality).toMatchObject({ severity: "bad", code: 0x80000000 });
  await system.stop();
  await store.open(tags.list());
  const stored = [
    ...(await store.samples.readSamples({ tag: "chamber.pressure", from: 0, to: clock.now() + 1 })),
    ...(await store.samples.readSamples({ tag: "chamber.valve", from: 0, to: clock.now() + 1 })),
  ];
  expect(drops).toEqual([]);
  expect(stored.length).toBeGreaterThanOrEqual(2);
  expect(stored.every((sample) => sample.quality.severity === "bad")).toBe(true);
  expect(stored.find((sample) => sample.tag === "chamber.pressure")!.quality).toEqual(live.quality);
});
