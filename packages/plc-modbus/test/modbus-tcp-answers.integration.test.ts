import { afterEach, describe, expect, it } from "vitest";
import { defineTags, KilnError, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer, type RawRequest } from "./raw-tcp-device";

// A Modbus TCP device that answers wrongly in one field at a time: no answer that does not fit its request
// exactly is ever decoded into a good value (the same check as on a serial line).
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  u16: { dataType: "uint16", address: "HR0", access: "readwrite" },
  f32: { dataType: "float32", address: "HR2:float32", access: "readwrite" },
  i32: { dataType: "int32", address: "HR4:int32" },
  coil0: { dataType: "bool", address: "C0", access: "readwrite" },
  coil12: { dataType: "bool", address: "C12" },
});

async function connect(
  answer: (request: RawRequest) => RawAnswer,
  options: Partial<ModbusDriverOptions> = {},
): Promise<{ driver: ModbusDriver; requests: RawRequest[] }> {
  const device = await startRawTcpDevice(answer);
  cleanups.push(device.stop);
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port },
    requestTimeoutMs: 300,
    ...options,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { driver, requests: device.requests };
}

const wrongReads: readonly (readonly [string, RawAnswer, RegExp])[] = [
  ["a byte count of 0", { kind: "normal", byteCount: 0 }, /byte count 0 for/],
  ["a byte count smaller than asked", { kind: "normal", byteCount: 4 }, /byte count 4 for 6 registers/],
  ["an odd byte count", { kind: "normal", byteCount: 11 }, /byte count 11/],
  ["fewer registers than asked (length consistent)", { kind: "normal", registers: 2 }, /byte count 4 for 6/],
  ["protocol id 1", { kind: "normal", protocolId: 1 }, /protocol id 1/],
  ["an MBAP length short of the frame", { kind: "normal", lengthDelta: -2 }, /where \d+ were due/],
  ["another unit id", { kind: "normal", unitId: 9 }, /unit 9 to a request for unit 1/],
];

describe("Modbus TCP answers are checked against their request", () => {
  it.each(wrongReads)("%s is bad (BadCommunicationError with the reason), never decoded", async (_, reply, reason) => {
    const { driver } = await connect((request) => (request.functionCode === 3 ? reply : { kind: "normal" }));
    const samples = await driver.read([tags.get("u16"), tags.get("f32"), tags.get("i32")]);
    for (const sample of samples) {
      expect(sample.value).toBeNull();
      expect(sample.quality).toMatchObject({ severity: "bad", code: 0x80050000 });
      expect(sample.quality.reason).toMatch(reason);
    }
  });

  it("a bit read with a byte count short of ceil(quantity / 8) is bad", async () => {
    const { driver } = await connect((request) =>
      request.functionCode === 1 ? { kind: "normal", byteCount: 1 } : { kind: "normal" },
    );
    const samples = await driver.read([tags.get("coil0"), tags.get("coil12")]);
    for (const sample of samples) expect(sample.quality.reason).toMatch(/byte count 1 for 13 bits \(2 due\)/);
  });

  it("reads right values again after a bad answer", async () => {
    const { driver } = await connect((request) =>
      request.index === 0 ? { kind: "normal", byteCount: 0 } : { kind: "normal" },
    );
    expect((await driver.read([tags.get("u16")]))[0]!.quality.severity).toBe("bad");
    expect((await driver.read([tags.get("u16")]))[0]).toMatchObject({ value: 1000, quality: { severity: "good" } });
  });

  const wrongEchoes: readonly (readonly [string, RawAnswer])[] = [
    ["another value", { kind: "normal", echoValue: 7 }],
    ["another address", { kind: "normal", echoAddress: 99 }],
  ];
  it.each(wrongEchoes)("a write answer echoing %s rejects with KILN_DEVICE_ERROR (FC 5, 6, 16)", async (_, reply) => {
    const { driver } = await connect((request) => (request.functionCode >= 5 ? reply : { kind: "normal" }));
    for (const [name, value] of [
      ["u16", 12],
      ["f32", 1.5],
      ["coil0", true],
    ] as const) {
      const error = await driver.write(tags.get(name), value).catch((caught: unknown) => caught);
      expect(KilnError.is(error, "KILN_DEVICE_ERROR"), name).toBe(true);
      expect((error as Error).message).toMatch(/echoed address or value differs/);
    }
  });
});

describe("pipelining with a device that numbers its answers wrongly", () => {
  const scanTags = [0, 20, 40, 60, 80, 100].map((address) =>
    defineTags({ [`t${address}`]: { dataType: "uint16", address: `HR${address}` } }).get(`t${address}`),
  );

  // Requests of 1, 2, 3 and 4 registers (maxGap 0): answers that cannot be taken for each other's, so they
  // are pipelined before the device has proved its transaction ids.
  const mixedTags = [0, 20, 21, 40, 41, 42, 60, 61, 62, 63].map((address) =>
    defineTags({ [`t${address}`]: { dataType: "uint16", address: `HR${address}` } }).get(`t${address}`),
  );

  it("never pipelines two requests whose answers look alike until the device proved its ids", async () => {
    // A gateway that runs requests one at a time and stamps each answer with the newest request's id: with
    // same-shape requests in flight together, the first answer would fit the newest request, marked good.
    let newest = 0;
    let freeAt = 0;
    const device = await startRawTcpDevice((request) => {
      newest = request.transactionId;
      const now = Date.now();
      freeAt = Math.max(freeAt, now) + 5;
      return { kind: "normal", delayMs: freeAt - now, transactionId: () => newest };
    });
    cleanups.push(device.stop);
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host: device.host, port: device.port },
      requestTimeoutMs: 300,
      maxInFlight: 4,
      planner: { maxGap: 0 },
    });
    cleanups.push(() => driver.close());
    await driver.connect();
    const seen: Sample[] = [];
    for (let scan = 0; scan < 3; scan++) seen.push(...(await driver.read(scanTags)));
    for (let scan = 0; scan < 3; scan++) seen.push(...(await driver.read(mixedTags)));
    const good = seen.filter((sample) => sample.quality.severity === "good");
    expect(good.length).toBeGreaterThan(0);
    for (const sample of good) expect(sample.value).toBe(rawRegister(1, Number(sample.tag.slice(1))));
    // Mixed shapes in flight expose it: the driver falls back to one request at a time for good.
    expect(driver.maxInFlight).toBe(1);
  });

  it("never shifts values into other tags and falls back to one request in flight", async () => {
    // Answers carry the previous request's transaction id: every answer fits the shape of a request in flight.
    const { driver } = await connect(
      (request) => ({ kind: "normal", transactionId: (request.transactionId - 1) & 0xffff }),
      {
        maxInFlight: 4,
        planner: { maxGap: 0 },
      },
    );
    const seen: Sample[] = [];
    for (let scan = 0; scan < 3; scan++) seen.push(...(await driver.read(mixedTags)));
    for (const sample of seen.filter((sample) => sample.quality.severity === "good")) {
      expect(sample.value).toBe(rawRegister(1, Number(sample.tag.slice(1))));
    }
    expect(driver.maxInFlight).toBe(1);
  });

  it("an answer with a transaction id no request has fails the requests in flight", async () => {
    const { driver } = await connect(
      (request) =>
        request.index === 1
          ? { kind: "normal", transactionId: 4000 }
          : { kind: "normal", delayMs: request.index === 0 ? 20 : 0 },
      { maxInFlight: 3, planner: { maxGap: 0 } },
    );
    const samples = await driver.read(mixedTags);
    for (const sample of samples.filter((sample) => sample.quality.severity === "good")) {
      expect(sample.value).toBe(rawRegister(1, Number(sample.tag.slice(1))));
    }
    expect(samples.some((sample) => /transaction id 4000/.test(sample.quality.reason ?? ""))).toBe(true);
    expect(driver.maxInFlight).toBe(1);
  });
});

describe("stale answers with one request in flight", () => {
  const tagsAt = (addresses: number[]) =>
    addresses.map((address) =>
      defineTags({ [`t${address}`]: { dataType: "uint16", address: `HR${address}` } }).get(`t${address}`),
    );

  it("a repeated answer to an earlier request is dropped; the request in flight gets its own", async () => {
    // Each answer is sent twice, the copy 30 ms later, while the next request waits for its own answer (60 ms).
    const { driver } = await connect(
      (request) => ({ kind: "normal", delayMs: request.index === 0 ? 0 : 60, duplicateAfterMs: 30 }),
      { planner: { maxGap: 0 } },
    );
    const samples = await driver.read(tagsAt([0, 20, 40]));
    expect(samples.map((sample) => sample.quality.severity)).toEqual(["good", "good", "good"]);
    expect(samples.map((sample) => sample.value)).toEqual([0, 20, 40].map((at) => rawRegister(1, at)));
    expect(driver.units()).toMatchObject([{ unitId: 1, state: "online", consecutiveFailures: 0 }]);
  });

  it("an answer with an id never used is dropped too, not taken as a desync", async () => {
    const { driver } = await connect(
      (request) =>
        request.index === 0 ? { kind: "normal", transactionId: 4000, duplicateAfterMs: 0 } : { kind: "normal" },
      { planner: { maxGap: 0 }, requestTimeoutMs: 100 },
    );
    // The first request's only answers carry id 4000: it times out, and the connection still serves the next.
    const [first] = await driver.read(tagsAt([0]));
    expect(first!.quality.severity).toBe("bad");
    expect(first!.quality.reason).toMatch(/timed out/);
    const samples = [first, ...(await driver.read(tagsAt([20])))];
    expect(samples[1]).toMatchObject({ value: rawRegister(1, 20), quality: { severity: "good" } });
  });
});

describe("dead units behind a gateway never take the link down", () => {
  const gatewayTags = defineTags({
    "u1.a": { dataType: "uint16", address: "HR0@1" },
    "u2.a": { dataType: "uint16", address: "HR0@2" },
    "u3.a": { dataType: "uint16", address: "HR0@3" },
    "u4.a": { dataType: "uint16", address: "HR0@4" },
    "u2.b": { dataType: "uint16", address: "HR20@2" },
    "u2.c": { dataType: "uint16", address: "HR40@2" },
  });
  const silentAbove1 = (request: RawRequest): RawAnswer =>
    request.unitId >= 2 ? { kind: "silent" } : { kind: "normal" };

  it.each([
    ["three silent units", ["u1.a", "u2.a", "u3.a", "u4.a"], 1],
    ["one silent unit with several requests in flight", ["u1.a", "u2.a", "u2.b", "u2.c"], 4],
  ] as const)("%s: unit 1 stays good and the connection stays up", async (_, names, maxInFlight) => {
    const { driver } = await connect(silentAbove1, { maxInFlight, planner: { maxGap: 0 }, maxConsecutiveTimeouts: 3 });
    const statuses: string[] = [];
    driver.onStatusChange((change) => statuses.push(change.to));
    const list = names.map((name) => gatewayTags.get(name));
    for (let scan = 0; scan < 5; scan++) {
      const samples = await driver.read(list);
      expect(samples[0]).toMatchObject({ value: 1000, quality: { severity: "good" } });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(statuses).toEqual([]);
    expect(driver.status).toBe("connected");
  });

  it("the link is still declared lost when no unit answers any more", async () => {
    const { driver } = await connect((request) => (request.index >= 1 ? { kind: "silent" } : { kind: "normal" }), {
      maxConsecutiveTimeouts: 3,
      reconnect: { enabled: false },
    });
    const list = [gatewayTags.get("u1.a"), gatewayTags.get("u2.a")];
    for (let scan = 0; scan < 6 && driver.status === "connected"; scan++)
      await driver.read(list).catch(() => undefined);
    expect(driver.status).toBe("disconnected");
  });
});

describe("a frame cut short on the way is never completed with the next frame's bytes", () => {
  const tagsAt = (addresses: number[]) =>
    addresses.map((address) =>
      defineTags({ [`t${address}`]: { dataType: "uint16", address: `HR${address}` } }).get(`t${address}`),
    );
  const expectNoWrongGood = (samples: readonly Sample[]): void => {
    for (const sample of samples.filter((each) => each.quality.severity === "good")) {
      expect(sample.value, sample.tag).toBe(rawRegister(1, Number(sample.tag.slice(1))));
    }
  };

  // A gateway that loses the end of an answer and then sends the whole answer again: with one request in
  // flight, the cut answer would take the first `cut` bytes of the repeat (its transaction id) as data.
  it.each([1, 2, 3, 4, 5, 6])("cut by %i byte(s), then sent whole: bad, never a good wrong value", async (cut) => {
    const { driver } = await connect(
      (request) => (request.index === 0 ? { kind: "normal", cut, thenWhole: true } : { kind: "normal" }),
      { planner: { maxGap: 0 } },
    );
    const [first] = await driver.read(tagsAt([120]));
    expect(first!.quality.severity).toBe("bad");
    // Cut into the header (6 bytes), the misalignment shows as an impossible MBAP length instead.
    expect(first!.quality.reason).toMatch(cut < 6 ? /do not line up/ : /MBAP length/);
    // The stream is in step again: the next read is right.
    expect((await driver.read(tagsAt([120])))[0]).toMatchObject({
      value: rawRegister(1, 120),
      quality: { severity: "good" },
    });
  });

  it("with requests pipelined, one cut answer fails the requests in flight; no value lands in another tag", async () => {
    // The third tag read (one register; the connection's id proof, fix12e, reads other sizes) is cut.
    let tagReads = 0;
    const { driver } = await connect(
      (request) =>
        request.value === 1 && ++tagReads === 3 ? { kind: "normal", cut: 2 } : { kind: "normal", delayMs: 5 },
      { maxInFlight: 8, planner: { maxGap: 0 } },
    );
    const addresses = [100, 110, 120, 130, 140, 150, 160, 170];
    const seen: Sample[] = [];
    for (let scan = 0; scan < 3; scan++) seen.push(...(await driver.read(tagsAt(addresses))));
    expectNoWrongGood(seen);
    expect(seen.some((sample) => sample.quality.severity === "bad")).toBe(true);
    // Later scans read every tag right.
    const last = await driver.read(tagsAt(addresses));
    expect(last.map((sample) => sample.quality.severity)).toEqual(addresses.map(() => "good"));
    expectNoWrongGood(last);
  });

  it("a cut answer followed by silence times out, and its leftover bytes never complete the next answer", async () => {
    const { driver } = await connect(
      (request) => (request.index === 0 ? { kind: "normal", cut: 2 } : { kind: "normal" }),
      { planner: { maxGap: 0 }, requestTimeoutMs: 100 },
    );
    const [first] = await driver.read(tagsAt([120]));
    expect(first!.quality).toMatchObject({ severity: "bad" });
    expect((await driver.read(tagsAt([120])))[0]).toMatchObject({
      value: rawRegister(1, 120),
      quality: { severity: "good" },
    });
  });
});
