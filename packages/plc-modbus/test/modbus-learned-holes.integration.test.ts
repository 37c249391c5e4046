import { afterEach, describe, expect, it } from "vitest";
import { QualityCodes, defineTags, type Logger } from "@kiln/core";
import { ModbusDriver, ModbusSimulator, type ModbusDriverOptions } from "../src/index";
import { startRawTcpDevice } from "./raw-tcp-device";

// What the driver learns from refusals: only what a split proved or several reads confirmed, re-probed on
// a growing backoff, forgotten on reconnect, never learned from "not now" exception codes.
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  "flow.total": { dataType: "uint16", address: "HR266@100" },
});

async function setup(options: Partial<ModbusDriverOptions> = {}) {
  const simulator = new ModbusSimulator({ tags, initialValues: { "flow.total": 42 } });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, ...options });
  cleanups.push(() => driver.close());
  await driver.connect();
  const requests: number[] = [];
  simulator.onRequest((request) => requests.push(request.address));
  return { simulator, driver, requests };
}

describe("learned holes", () => {
  it("HR266@100 alone in its request, refused once and then served: bad once, good on the next read", async () => {
    const { simulator, driver, requests } = await setup();
    const refuse = simulator.injectException({ area: "holding-register", address: 266, unitId: 100 }, 2);
    const [refused] = await driver.read(tags.list());
    expect(refused!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadNodeIdUnknown });
    refuse();
    const [served] = await driver.read(tags.list());
    expect(served).toMatchObject({ value: 42, quality: { severity: "good" } });
    expect(driver.learned.poisoned).toEqual([]);
    // The two reads, and between them the connection's id proof: two reads sent together (fix12e).
    expect(requests).toEqual([266, 266, 266, 266]);
  });

  it("a tag refused alone in 3 reads in a row is learned: no traffic, a reason naming it and the next probe", async () => {
    const { simulator, driver, requests } = await setup({ planner: { learnRefusalSpanMs: 0 } });
    simulator.injectException({ area: "holding-register", address: 266, unitId: 100 }, 2);
    for (let read = 0; read < 3; read++) await driver.read(tags.list());
    expect(requests).toHaveLength(3 + 2); // and the connection's id proof, two reads (fix12e)
    const [learned] = await driver.read(tags.list());
    expect(requests).toHaveLength(3 + 2);
    expect(learned!.quality.reason).toMatch(
      /^modbus exception 2 \(illegal data address\) at HR266:uint16@100; learned, next probe at \d{4}-\d\d-\d\dT[\d:.]+Z$/,
    );
    expect(driver.learned.poisoned).toEqual([expect.objectContaining({ unitId: 100, address: 266, exceptionCode: 2 })]);
  });

  it("never learns from a busy device (exception 6), and keeps reading it", async () => {
    const { simulator, driver, requests } = await setup();
    // The device answered before it got busy: its 6 comes in its usual time, the device's own answer (a 4 or 6
    // before any answer was timed on the connection may be a queued gateway's giving up: its shape then waits for
    // the late bound, ADR 0041 fix12k).
    for (let read = 0; read < 4; read++) await driver.read(tags.list());
    const before = requests.length;
    simulator.injectException({ area: "holding-register", address: 266, unitId: 100 }, 6);
    for (let read = 0; read < 5; read++) {
      const [sample] = await driver.read(tags.list());
      expect(sample!.quality.severity).toBe("bad");
    }
    expect(requests.length - before).toBe(5);
    expect(driver.learned.poisoned).toEqual([]);
  });

  it("forgets a learned hole on reconnect", async () => {
    const { simulator, driver } = await setup({
      reconnect: { initialDelayMs: 10 },
      planner: { learnRefusalSpanMs: 0 },
    });
    const refuse = simulator.injectException({ area: "holding-register", address: 266, unitId: 100 }, 2);
    for (let read = 0; read < 3; read++) await driver.read(tags.list());
    expect(driver.learned.poisoned).toHaveLength(1);
    refuse();
    const reconnected = new Promise<void>((resolve) =>
      driver.onStatusChange((change) => {
        if (change.to === "connected") resolve();
      }),
    );
    simulator.dropConnections();
    await reconnected;
    expect(driver.learned.poisoned).toEqual([]);
    const [sample] = await driver.read(tags.list());
    expect(sample).toMatchObject({ value: 42, quality: { severity: "good" } });
  });

  it("a unit refusing every address (exception 2) for several reads learns no holes: good again once it serves", async () => {
    // A unit misconfigured for a while (or a gateway mapping it wrong) refuses everything: a unit-level problem,
    // not one hole per tag learned until its probe (~30 s) after the unit is fixed.
    const unitTags = defineTags({
      "flow.total": { dataType: "uint16", address: "HR266@100" },
      "flow.rate": { dataType: "uint16", address: "HR300@100" },
      "flow.alarm": { dataType: "bool", address: "C10@100" },
    });
    const simulator = new ModbusSimulator({ tags: unitTags, initialValues: { "flow.total": 42, "flow.rate": 7 } });
    const { host, port } = await simulator.start();
    cleanups.push(() => simulator.stop());
    const warnings: string[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_fields: unknown, message?: string) => warnings.push(message ?? ""),
      error: () => undefined,
      child: () => logger,
    };
    const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, logger });
    cleanups.push(() => driver.close());
    await driver.connect();
    const registers = simulator.injectException({ area: "holding-register", address: 0, length: 1000, unitId: 100 }, 2);
    const coils = simulator.injectException({ area: "coil", address: 0, length: 100, unitId: 100 }, 2);
    for (let read = 0; read < 4; read++) {
      const samples = await driver.read(unitTags.list());
      expect(samples.map((sample) => sample.quality.code)).toEqual(Array(3).fill(QualityCodes.BadNodeIdUnknown));
    }
    expect(driver.learned.poisoned).toEqual([]);
    expect(warnings.filter((message) => message.includes("refused every address"))).toHaveLength(1);
    registers();
    coils();
    const served = await driver.read(unitTags.list());
    expect(served.map((sample) => sample.quality.severity)).toEqual(["good", "good", "good"]);
    expect(served.map((sample) => sample.value)).toEqual([42, 7, false]);
  });

  describe("a refusal explained by a transient condition teaches nothing (adv12 M4)", () => {
    /** Refuses FC 3 with `code` after 5 reads for 1.5 s, serves input registers throughout; 10 reads/s. */
    async function blanketRefusal(code: number, spec: Record<string, { dataType: "uint16"; address: string }>) {
      let refuseUntil = 0;
      const device = await startRawTcpDevice((request) =>
        request.functionCode === 3 && Date.now() < refuseUntil ? { kind: "exception", code } : { kind: "normal" },
      );
      cleanups.push(() => device.stop());
      const driver = new ModbusDriver({ transport: { kind: "tcp", host: device.host, port: device.port } });
      cleanups.push(() => driver.close());
      await driver.connect();
      const list = defineTags(spec).list();
      let refusedReads = 0;
      for (let read = 0; read < 5; read++) await driver.read(list);
      refuseUntil = Date.now() + 1_500;
      while (Date.now() < refuseUntil) {
        const samples = await driver.read(list);
        if (samples.some((sample) => sample.quality.severity === "bad")) refusedReads++;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const after = await driver.read(list);
      return { driver, after, refusedReads };
    }

    it("every holding register refused for 1.5 s while input registers are served: no hole learned, good at once after", async () => {
      const spec: Record<string, { dataType: "uint16"; address: string }> = {
        ir: { dataType: "uint16", address: "IR0" },
      };
      for (let address = 0; address < 8; address++)
        spec[`hr${address}`] = { dataType: "uint16", address: `HR${address}` };
      const { driver, after, refusedReads } = await blanketRefusal(2, spec);
      expect(refusedReads).toBeGreaterThanOrEqual(3);
      // Before: all 8 learned, bad for 30 s.
      expect(driver.learned.poisoned).toEqual([]);
      expect(after.map((sample) => sample.quality.severity)).toEqual(Array(9).fill("good"));
    });

    it("a tag alone in its request refused in many reads within 1.5 s (exception 3): not learned, good at once after", async () => {
      const { driver, after, refusedReads } = await blanketRefusal(3, {
        ir: { dataType: "uint16", address: "IR0" },
        total: { dataType: "uint16", address: "HR266@1" },
      });
      expect(refusedReads).toBeGreaterThanOrEqual(3);
      expect(driver.learned.poisoned).toEqual([]);
      expect(after.map((sample) => sample.quality.severity)).toEqual(["good", "good"]);
    });
  });
});
