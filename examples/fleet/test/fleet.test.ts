import { afterAll, expect, test } from "vitest";
import { startFleet, type Fleet } from "../src/fleet";

let fleet: Fleet | undefined;
afterAll(async () => {
  await fleet?.stop();
});

test("three machines (two Modbus, one OPC UA) reach one host and one database: rows for each", async () => {
  fleet = await startFleet({ group: "fleet-test" });
  expect(fleet.machines.map((machine) => `${machine.id}:${machine.protocol}`)).toEqual([
    "press-1:modbus",
    "press-2:modbus",
    "oven-1:opcua",
  ]);
  const counters = { "press-1": "press.strokes", "press-2": "press.strokes", "oven-1": "oven.batches" } as const;
  const rows = async (machine: Fleet["machines"][number]) =>
    (
      await fleet!.store.samples.readSamples({
        tag: machine.centralTag(counters[machine.id as keyof typeof counters]),
        from: 0,
        to: Date.now() + 60_000,
      })
    ).filter((sample) => sample.quality.severity === "good");
  await expect
    .poll(
      async () =>
        Math.min(...(await Promise.all(fleet!.machines.map(async (machine) => (await rows(machine)).length)))),
      {
        timeout: 30_000,
        interval: 250,
      },
    )
    .toBeGreaterThanOrEqual(3);
  const health = fleet.host.health();
  expect(health.edgeNodes.map((node) => node.state).sort()).toEqual(["online", "online", "online"]);
  expect(health.samples.dropped + health.samples.discarded).toBe(0);
}, 60_000);
