import { expect, test } from "vitest";
import { SimulatedClock } from "@kiln/core/testing";
import { createQuickstart } from "../src/quickstart";

test("the quickstart logs every sample it acquires and raises its pressure alarm", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const system = createQuickstart({ clock });
  const raised: string[] = [];
  system.bus.on("alarm-raise", (event) => void raised.push(event.alarmId));
  await system.start();
  await clock.advance(3_000);
  expect(system.read("chamber.pressure")?.quality.severity).toBe("good");
  await system.stop();
  const { samplesIn, samplesOut, samplesDropped } = system.health().logging;
  expect(samplesIn).toBeGreaterThan(30);
  expect(samplesOut).toBe(samplesIn);
  expect(samplesDropped).toBe(0);
  // The sine (2 ± 1 mbar, 2 s period) crosses the 2.8 mbar setpoint once per period.
  expect(raised).toEqual(["chamber.pressure:HI", "chamber.pressure:HI"]);
});
