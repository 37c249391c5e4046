import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawRequest } from "./raw-tcp-device";

// Dead request blocks on a live unit, and several units dying together behind one gateway (adv12e MEDIUMs):
// a block the unit never answers is backed off and named in health; a read waits for at most one request
// timeout however many units die; a dead unit is named offline after offlineAfter of its own reads.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 120;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function setup(
  silent: (request: RawRequest) => boolean,
  options: Partial<ModbusDriverOptions> = {},
): Promise<{ driver: ModbusDriver; requests: RawRequest[] }> {
  const device = await startRawTcpDevice((request) => (silent(request) ? { kind: "silent" } : { kind: "normal" }));
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
    ...options,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { driver, requests: device.requests };
}

const byTag = (samples: readonly Sample[]) => Object.fromEntries(samples.map((sample) => [sample.tag, sample]));

describe("a request block its live unit never answers", () => {
  const tags = defineTags({
    a: { dataType: "uint16", address: "HR0" },
    b: { dataType: "uint16", address: "HR100" },
    c: { dataType: "uint16", address: "HR101" },
  });

  it("is backed off after offlineAfter reads: its tags bad naming the block, no request, listed in health", async () => {
    const { driver, requests } = await setup((request) => request.address === 100, {
      unitHealth: { offlineAfter: 3, probeInitialDelayMs: 60_000, probeMaxDelayMs: 60_000 },
    });
    for (let read = 0; read < 3; read++) {
      const samples = byTag(await driver.read(tags.list()));
      expect(samples.a).toMatchObject({ value: rawRegister(1, 0), quality: { severity: "good" } });
      expect(samples.b!.quality.severity).toBe("bad");
      await sleep(TIMEOUT_MS + 20);
    }
    expect(driver.endpoints()).toContainEqual(
      expect.objectContaining({ endpoint: "unit 1 HR100-101", state: "offline" }),
    );
    for (let read = 0; read < 3; read++) {
      const before = requests.length;
      const samples = byTag(await driver.read(tags.list()));
      // No traffic for the dead block; the live one is read and good (after the last timeout, the first read
      // sends a fence first: a read of another size at HR0, see docs/drivers/modbus.md).
      expect(requests.slice(before).filter((request) => request.address >= 100)).toEqual([]);
      expect(
        requests
          .slice(before)
          .filter((request) => request.value === 1)
          .map((request) => request.address),
      ).toEqual([0]);
      expect(samples.a).toMatchObject({ value: rawRegister(1, 0), quality: { severity: "good" } });
      for (const name of ["b", "c"]) {
        expect(samples[name]!.quality).toMatchObject({ severity: "bad" });
        expect(samples[name]!.quality.reason).toMatch(
          /^unit 1 HR100-101: no answer in its last 3 reads while the unit answered others; next probe at \d{4}-/,
        );
      }
    }
    // The unit itself answers: it is not offline.
    expect(driver.units()).toMatchObject([{ unitId: 1, state: "online" }]);
  });

  it("comes back when its due probe is answered (sibling: a block that recovers)", async () => {
    let dead = true;
    const { driver } = await setup((request) => dead && request.address === 100, {
      unitHealth: { offlineAfter: 2, probeInitialDelayMs: 200, probeMaxDelayMs: 200 },
    });
    for (let read = 0; read < 2; read++) {
      await driver.read(tags.list());
      await sleep(TIMEOUT_MS + 20);
    }
    expect(driver.endpoints().map((endpoint) => endpoint.endpoint)).toContain("unit 1 HR100-101");
    dead = false;
    await sleep(250);
    const samples = byTag(await driver.read(tags.list()));
    expect(samples.b).toMatchObject({ value: rawRegister(1, 100), quality: { severity: "good" } });
    expect(driver.endpoints().map((endpoint) => endpoint.endpoint)).not.toContain("unit 1 HR100-101");
  });

  it("before the unit's live blocks (sibling): the live blocks are read and good, the dead one alone is bad", async () => {
    // HR0 dead, HR100 live: a timeout of the unit's first block used to skip the unit for the whole read, on
    // every read, and its probes asked the dead block again, so the live block was never read.
    const { driver } = await setup((request) => request.address === 0, {
      unitHealth: { offlineAfter: 3, probeInitialDelayMs: 60_000, probeMaxDelayMs: 60_000 },
    });
    const reads: Sample[][] = [];
    for (let read = 0; read < 6; read++) {
      reads.push(await driver.read(tags.list()));
      await sleep(TIMEOUT_MS + 20);
    }
    const last = byTag(reads.at(-1)!);
    expect(last.b).toMatchObject({ value: rawRegister(1, 100), quality: { severity: "good" } });
    expect(last.c).toMatchObject({ value: rawRegister(1, 101), quality: { severity: "good" } });
    expect(last.a!.quality.reason).toMatch(/^unit 1 HR0: no answer/);
    expect(driver.endpoints()).toContainEqual(expect.objectContaining({ endpoint: "unit 1 HR0", state: "offline" }));
  });
});

describe("several units dying together behind one gateway", () => {
  const UNITS = 6;
  const tags = defineTags(
    Object.fromEntries(
      Array.from({ length: UNITS }, (_, index) => [
        [`u${index + 1}.a`, { dataType: "uint16" as const, address: `HR0@${index + 1}` }],
        [`u${index + 1}.b`, { dataType: "uint16" as const, address: `HR100@${index + 1}` }],
      ]).flat(),
    ),
  );

  it("a read sends at most one request that gets no answer, however many units died", async () => {
    let dead = false;
    // maxConsecutiveTimeouts 0: with every unit silent the link would otherwise be declared lost (rightly).
    const { driver, requests } = await setup(() => dead, {
      maxConsecutiveTimeouts: 0,
      unitHealth: { offlineAfter: 3, probeInitialDelayMs: 60_000, probeMaxDelayMs: 60_000 },
    });
    expect((await driver.read(tags.list())).every((sample) => sample.quality.severity === "good")).toBe(true);
    dead = true;
    for (let read = 0; read < 8; read++) {
      const before = requests.length;
      const samples = await driver.read(tags.list());
      // Every read of the tags' blocks sent while the read ran went unanswered; there may be one at most (a
      // fence, a read of 2 registers after a timeout, does not count: its timeout is short).
      const blocks = requests.slice(before).filter((request) => request.value === 1);
      expect(blocks.length).toBeLessThanOrEqual(1);
      expect(samples.every((sample) => sample.quality.severity === "bad")).toBe(true);
      // A probe started after the read has timed out before the next one.
      await sleep(TIMEOUT_MS + 40);
    }
  });

  it("each dead unit is named offline after offlineAfter of its own reads, not offlineAfter × units", async () => {
    let dead = false;
    const { driver } = await setup(() => dead, {
      maxConsecutiveTimeouts: 0,
      unitHealth: { offlineAfter: 3, probeInitialDelayMs: 60_000, probeMaxDelayMs: 60_000 },
    });
    await driver.read(tags.list());
    dead = true;
    // One read finds one more dead unit (it waits for one timeout); each is offline 2 reads after.
    for (let read = 0; read < UNITS + 2; read++) {
      await driver.read(tags.list());
      await sleep(TIMEOUT_MS + 40);
    }
    expect(driver.units().map((unit) => [unit.unitId, unit.state])).toEqual(
      Array.from({ length: UNITS }, (_, index) => [index + 1, "offline"]),
    );
    // Every unit, and (their timeouts being anomalies) the answer stream until a fence proves it aligned.
    const offline = driver.endpoints().filter((endpoint) => endpoint.state === "offline");
    expect(offline.filter((endpoint) => endpoint.endpoint.startsWith("unit "))).toHaveLength(UNITS);
  });

  it("a live unit after a dead one is read first on the next scan and good (sibling)", async () => {
    let deadUnit = 0;
    const { driver } = await setup((request) => request.unitId === deadUnit);
    await driver.read(tags.list());
    deadUnit = 1;
    const first = byTag(await driver.read(tags.list()));
    expect(first["u2.a"]!.quality.reason).toMatch(/^unit 2 not asked in this read: another request timed out first/);
    await sleep(TIMEOUT_MS + 40);
    const next = await driver.read(tags.list());
    for (const sample of next) {
      if (sample.tag.startsWith("u1.")) expect(sample.quality.severity).toBe("bad");
      else expect(sample).toMatchObject({ quality: { severity: "good" } });
    }
  });
});

describe("a probe and a read in progress", () => {
  it("a probe never slips in between two requests of a read (it would hold the line a whole timeout)", async () => {
    const tags = defineTags({
      "u1.a": { dataType: "uint16", address: "HR0@1" },
      "u1.b": { dataType: "uint16", address: "HR100@1" },
      "u2.a": { dataType: "uint16", address: "HR0@2" },
    });
    const device = await startRawTcpDevice((request) =>
      request.unitId === 2 ? { kind: "silent" } : { kind: "normal", delayMs: request.address === 0 ? 40 : 0 },
    );
    cleanups.push(() => device.stop());
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host: device.host, port: device.port },
      requestTimeoutMs: TIMEOUT_MS,
      planner: { maxGap: 0 },
      unitHealth: { offlineAfter: 1, probeInitialDelayMs: 50, probeMaxDelayMs: 50 },
    });
    cleanups.push(() => driver.close());
    await driver.connect();
    await driver.read(tags.list());
    expect(driver.units().find((unit) => unit.unitId === 2)?.state).toBe("offline");
    await sleep(TIMEOUT_MS + 80);
    const before = device.requests.length;
    // A read of unit 1 (its first answer takes 40 ms) while a read of offline unit 2 queues its due probe.
    const unit1 = driver.read([tags.get("u1.a"), tags.get("u1.b")]);
    await sleep(5);
    const unit2 = await driver.read([tags.get("u2.a")]);
    expect(unit2[0]!.quality.severity).toBe("bad");
    const samples = await unit1;
    expect(samples.map((sample) => sample.quality.severity)).toEqual(["good", "good"]);
    await sleep(20); // the probe goes once the read is over
    const order = device.requests
      .slice(before)
      .map((request) => `${request.unitId}/${request.address}x${request.value}`);
    // On TCP with the late-answer guard unit 2's timeout made the answer stream suspect; the fence (a read of
    // another size like the last read answered) went in the pause after it, before this read; the probe reads
    // another size than the block (2/0x2).
    expect(
      device.requests.slice(0, before).map((request) => `${request.unitId}/${request.address}x${request.value}`),
    ).toContain("1/100x2");
    expect(order.slice(0, 3)).toEqual(["1/0x1", "1/100x1", "2/0x2"]);
  });
});
