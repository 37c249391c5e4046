import { describe, expect, test } from "vitest";
import { defineTags, KilnError } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { plcDriverConformance, type PlcDriverFixture } from "@kiln/core/testing";
import { KlpDriver } from "../src/klp-driver";
import { KlpServer } from "../src/klp-server";

const tags = defineTags({
  "zone1.temperature": { dataType: "float64", unit: "°C", address: "ZONE1.TEMP" },
  "zone1.setpoint": { dataType: "float64", unit: "°C", access: "readwrite", address: "ZONE1.SP" },
  "door.open": { dataType: "bool", access: "readwrite", address: "DOOR.OPEN" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "RECIPE.NAME" },
  "heater.count": { dataType: "uint16", access: "readwrite", address: "HEATER.COUNT" },
  "zone2.temperature": { dataType: "float64", unit: "°C", address: "ZONE2.TEMP" }, // not on the device
  "zone1.pressure": { dataType: "float64", unit: "mbar", address: "ZONE1 PRESSURE" }, // not a KLP address
});

/** A fresh device on loopback and a driver for it, not yet connected. */
async function klpFixture(): Promise<PlcDriverFixture & { server: KlpServer }> {
  const server = new KlpServer({
    values: { "ZONE1.TEMP": 21.5, "ZONE1.SP": 180, "DOOR.OPEN": false, "RECIPE.NAME": "bake", "HEATER.COUNT": 6 },
    readOnly: ["HEATER.COUNT"],
  });
  const driver = new KlpDriver({ port: await server.start() });
  return {
    server,
    driver,
    readable: [tags.get("zone1.temperature"), tags.get("door.open"), tags.get("recipe.name")],
    writable: [
      { tag: tags.get("zone1.setpoint"), value: 200.5 },
      { tag: tags.get("door.open"), value: true },
      { tag: tags.get("recipe.name"), value: "cool down: 50 %" },
    ],
    readOnly: tags.get("zone1.temperature"),
    missing: tags.get("zone2.temperature"),
    unreachable: () => new KlpDriver({ port: 1 }), // nothing listens on port 1
    rejectedWrite: { tag: tags.get("heater.count"), value: 7 }, // read-only on the device
    dropConnection: () => server.dropClients(),
    stall: () => {
      server.stalled = true;
    },
    cleanup: () => server.stop(),
  };
}

plcDriverConformance({
  test,
  expect,
  describe,
  name: "KlpDriver",
  capabilities: { subscribe: false, browse: false },
  features: { missing: true, unreachable: true },
  factory: klpFixture,
});

describe("KlpDriver", () => {
  async function withFixture(body: (fixture: Awaited<ReturnType<typeof klpFixture>>) => Promise<void>) {
    const fixture = await klpFixture();
    try {
      await body(fixture);
    } finally {
      await fixture.driver.close();
      await fixture.server.stop();
    }
  }

  async function rejection(promise: Promise<unknown>): Promise<KilnError> {
    const error: unknown = await promise.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
    return error;
  }

  test("a lost connection rejects reads with a retryable KILN_NOT_CONNECTED and reports disconnected", async () => {
    await withFixture(async ({ driver, server, readable }) => {
      await driver.connect();
      expect((await driver.read(readable)).map((sample) => sample.quality.severity)).toEqual(["good", "good", "good"]);
      const lost = new Promise<DriverStatusChange>((resolve) =>
        driver.onStatusChange((change) => change.to === "disconnected" && resolve(change)),
      );
      await server.stop();
      const error = await rejection(driver.read(readable));
      expect(error.code).toBe("KILN_NOT_CONNECTED");
      expect(error.retryable).toBe(true);
      expect((await lost).from).toBe("connected");
      expect(driver.status).toBe("disconnected");
    });
  });

  test("a bad address in a tag definition rejects with KILN_VALIDATION naming <tag>.address", async () => {
    await withFixture(async ({ driver, server }) => {
      await driver.connect();
      const error = await rejection(driver.read([tags.get("zone1.temperature"), tags.get("zone1.pressure")]));
      expect(error.code).toBe("KILN_VALIDATION");
      expect(error.details.issues).toEqual([{ path: "zone1.pressure.address", message: expect.any(String) }]);
      expect(server.requests).toBe(0);
    });
  });

  test("reads every tag in one request; a write the device refuses rejects with KILN_WRITE_REJECTED", async () => {
    await withFixture(async ({ driver, server }) => {
      await driver.connect();
      const samples = await driver.read([
        tags.get("heater.count"),
        tags.get("zone2.temperature"),
        tags.get("zone1.setpoint"),
      ]);
      expect(samples.map((sample) => sample.value)).toEqual([6, null, 180]);
      expect(server.requests).toBe(1);
      const error = await rejection(driver.write(tags.get("heater.count"), 7));
      expect(error.code).toBe("KILN_WRITE_REJECTED");
      expect(error.details.klpCode).toBe(3);
      expect((await driver.read([tags.get("heater.count")]))[0]?.value).toBe(6);
    });
  });

  test("an aborted read rejects with the signal's reason; the next read still gets its own reply", async () => {
    await withFixture(async ({ driver, server }) => {
      await driver.connect();
      const reason = new KilnError("KILN_ABORTED", "stopping");
      expect(await rejection(driver.read([tags.get("zone1.setpoint")], AbortSignal.abort(reason)))).toBe(reason);
      expect(server.requests).toBe(0);
      // Aborted after the request went out: its reply arrives later and must not answer the next read.
      const controller = new AbortController();
      const aborted = rejection(driver.read([tags.get("zone1.setpoint")], controller.signal));
      controller.abort(reason);
      expect(await aborted).toBe(reason);
      const [door] = await driver.read([tags.get("door.open")]);
      expect(door?.value).toBe(false);
      expect(server.requests).toBe(2);
    });
  });
});
