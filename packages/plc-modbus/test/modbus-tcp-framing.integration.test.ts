import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample, type Tag } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions, type ModbusTcpTransport } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer, type RawRequest } from "./raw-tcp-device";

// Modbus TCP has no frame delimiter: an answer cut short on the way (its MBAP length claims more bytes than
// come) is completed by the first bytes of whatever comes next. Such a frame passes every check of its own,
// so it may be delivered only once the stream is proven aligned at its end. Each case below got wrong values
// marked good before that proof.
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function connect(
  answer: (request: RawRequest) => RawAnswer,
  options: Partial<ModbusDriverOptions> = {},
  transport: Partial<ModbusTcpTransport> = {},
): Promise<{ driver: ModbusDriver; requests: RawRequest[] }> {
  const device = await startRawTcpDevice(answer);
  cleanups.push(device.stop);
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port, ...transport },
    requestTimeoutMs: 300,
    ...options,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { driver, requests: device.requests };
}

const registerTag = (address: number, dataType: "uint16" | "float32" = "uint16"): Tag =>
  defineTags({
    [`t${address}`]: {
      dataType,
      address: dataType === "uint16" ? `HR${address}` : `HR${address}:float32`,
      access: "readwrite",
    },
  }).get(`t${address}`);
const tagsAt = (addresses: readonly number[]): Tag[] => addresses.map((address) => registerTag(address));
const block = (from: number, count: number): number[] => Array.from({ length: count }, (_, index) => from + index);

/** Every good sample holds `expected(address)`; returns how many were good. */
function expectNoWrongGood(
  samples: readonly Sample[],
  expected = (address: number) => rawRegister(1, address),
): number {
  const good = samples.filter((sample) => sample.quality.severity === "good");
  for (const sample of good) expect(sample.value, sample.tag).toBe(expected(Number(sample.tag.slice(1))));
  return good.length;
}

describe("a cut answer completed exactly at the end of the bytes received so far (header and PDU sent apart)", () => {
  // The gateway writes each answer's header and PDU as two segments, 1 ms apart, and resends the answer
  // whole after cutting its last 7 bytes: the cut answer is completed by the resend's 7-byte header, and
  // nothing follows it until the resend's PDU comes.
  const cutThenResent = (request: RawRequest): RawAnswer =>
    request.address === 0
      ? { kind: "normal", cut: 7, thenWhole: true, splitHeaderMs: 1 }
      : { kind: "normal", delayMs: 40 };

  it("with another request in flight, the quiet gap sees the rest coming: bad, never a wrong good value", async () => {
    const { driver } = await connect(
      cutThenResent,
      { maxInFlight: 2, planner: { maxGap: 0 } },
      // Wide enough that timer jitter on a busy machine never lets the 1 ms parts look quiet.
      { frameQuietGapMs: 50 },
    );
    const samples = await driver.read(tagsAt([...block(0, 6), 100]));
    expectNoWrongGood(samples);
    expect(samples[5]!.quality.severity).toBe("bad");
    expect(samples[5]!.quality.reason).toMatch(/do not line up/);
  });

  it('at maxInFlight 1, frameCheck "strict" waits the quiet gap: bad, never a wrong good value', async () => {
    const { driver } = await connect(
      cutThenResent,
      { planner: { maxGap: 0 } },
      { frameCheck: "strict", frameQuietGapMs: 50 },
    );
    const samples = await driver.read(tagsAt(block(0, 6)));
    expectNoWrongGood(samples);
    expect(samples[5]!.quality.severity).toBe("bad");
    // Strict mode reads a healthy device right, one request at a time.
    const next = await driver.read(tagsAt(block(20, 6)));
    expect(next.map((sample) => sample.quality.severity)).toEqual(block(20, 6).map(() => "good"));
    expectNoWrongGood(next);
  });

  it("an answer sent as header then PDU (not cut) is read good, pipelined or not, in either mode", async () => {
    for (const [maxInFlight, frameCheck] of [
      [1, "default"],
      [3, "default"],
      [1, "strict"],
    ] as const) {
      const { driver } = await connect(
        () => ({ kind: "normal", splitHeaderMs: 1 }),
        { maxInFlight, planner: { maxGap: 0 } },
        { frameCheck, frameQuietGapMs: 50 },
      );
      const addresses = [...block(0, 6), 100, 200];
      const samples = await driver.read(tagsAt(addresses));
      expect(
        samples.map((sample) => sample.quality.severity),
        `${maxInFlight} ${frameCheck}`,
      ).toEqual(addresses.map(() => "good"));
      expectNoWrongGood(samples);
    }
  });
});

describe("a cut answer completed by the next bytes, whose rest looks like the start of an MBAP header", () => {
  it("a cut of 9 bytes into registers that read like a header (0x0000, then 6) is bad, never a wrong good value", async () => {
    // The resend's bytes after the 9 that complete the cut answer are its data: 0x1234 0x0000 0x0006 ...,
    // a plausible header (protocol 0, length 6) whose transaction id no request has.
    const values = [0x1234, 0x0000, 0x0006, 0x0007, 0x0008, 0x0009, 0x000a, 0x000b];
    const { driver } = await connect(
      (request) =>
        request.index === 0 ? { kind: "normal", values, cut: 9, thenWhole: true } : { kind: "normal", values },
      { planner: { maxGap: 0 } },
    );
    const expected = (address: number) => values[address]!;
    const [first, second] = [await driver.read(tagsAt(block(0, 8))), await driver.read(tagsAt(block(0, 8)))];
    expectNoWrongGood(first, expected);
    expect(first[7]!.quality.severity).toBe("bad");
    expect(first[7]!.quality.reason).toMatch(/do not line up/);
    // The stream is in step again.
    expect(expectNoWrongGood(second, expected)).toBe(8);
  });
});

describe("a 6-byte cut completed by a write echo at address 0 (the rest reads as protocol 0, length = the value)", () => {
  it("pipelined with the write: the read and the write fail, never a wrong good value", async () => {
    const { driver } = await connect(
      (request) => (request.functionCode === 3 ? { kind: "normal", cut: 6 } : { kind: "normal", delayMs: 10 }),
      { maxInFlight: 2, planner: { maxGap: 0 } },
    );
    const [samples, written] = await Promise.all([
      driver.read(tagsAt(block(10, 4))),
      driver.write(registerTag(0), 6).then(
        () => "written",
        (error: unknown) => error,
      ),
    ]);
    expectNoWrongGood(samples);
    expect(samples[3]!.quality.severity).toBe("bad");
    expect(written).not.toBe("written");
    // Pipelining is what made the answers mix: the driver falls back to one request at a time.
    expect(driver.maxInFlight).toBe(1);
  });

  it("at maxInFlight 1, completed by a gateway's resend of the previous write's echo: bad, never a wrong good value", async () => {
    const { driver } = await connect(
      (request) =>
        request.functionCode === 6
          ? { kind: "normal", duplicateAfterMs: 30 }
          : request.index === 1
            ? { kind: "normal", cut: 6, delayMs: 5 }
            : { kind: "normal" },
      { planner: { maxGap: 0 } },
    );
    await driver.write(registerTag(0), 6);
    const samples = await driver.read(tagsAt(block(10, 4)));
    expectNoWrongGood(samples);
    expect(samples[3]!.quality.severity).toBe("bad");
    expect(samples[3]!.quality.reason).toMatch(/do not line up/);
    // The next read is right.
    expect(expectNoWrongGood(await driver.read(tagsAt(block(10, 4))))).toBe(4);
  });

  it("the same with a multi-register write echo (FC 16 at address 0, quantity 2): bad, never a wrong good value", async () => {
    const { driver } = await connect(
      (request) =>
        request.functionCode === 16
          ? { kind: "normal", duplicateAfterMs: 30 }
          : request.index === 1
            ? { kind: "normal", cut: 6, delayMs: 5 }
            : { kind: "normal" },
      { planner: { maxGap: 0 } },
    );
    await driver.write(registerTag(0, "float32"), 1.5);
    const samples = await driver.read(tagsAt(block(10, 4)));
    expectNoWrongGood(samples);
    expect(samples[3]!.quality.severity).toBe("bad");
  });
});

describe("a cut answer completed exactly by a whole later answer (nothing follows it)", () => {
  it("pipelined: an answer ending with a whole answer to the other request in flight is refused, never a wrong good value", async () => {
    // HR0..9's answer (29 bytes) loses its last 11; the 11-byte answer to HR100 then completes it exactly.
    const { driver } = await connect(
      (request) => (request.address === 0 ? { kind: "normal", cut: 11 } : { kind: "normal", delayMs: 20 }),
      { maxInFlight: 2, planner: { maxGap: 0 } },
    );
    const samples = await driver.read(tagsAt([...block(0, 10), 100]));
    expectNoWrongGood(samples);
    expect(samples[9]!.quality.severity).toBe("bad");
    expect(samples[9]!.quality.reason).toMatch(/ends with a whole answer/);
  });

  it("at maxInFlight 1: a read cut by 12 bytes completed by a gateway's resent write echo (12 bytes) is refused", async () => {
    const { driver } = await connect(
      (request) =>
        request.functionCode === 6
          ? { kind: "normal", duplicateAfterMs: 30 }
          : request.index === 1
            ? { kind: "normal", cut: 12, delayMs: 5 }
            : { kind: "normal" },
      { planner: { maxGap: 0 } },
    );
    await driver.write(registerTag(0), 6);
    const samples = await driver.read(tagsAt(block(10, 10)));
    expectNoWrongGood(samples);
    expect(samples[9]!.quality.severity).toBe("bad");
    expect(samples[9]!.quality.reason).toMatch(/ends with a whole answer/);
    expect(expectNoWrongGood(await driver.read(tagsAt(block(10, 10))))).toBe(10);
  });
});

describe("a device that appends bytes after each answer", () => {
  for (const trailing of [1, 2, 5]) {
    it(`${trailing} trailing byte(s): refused at once as "do not line up", not a timeout blamed on wiring`, async () => {
      const { driver } = await connect(() => ({ kind: "normal", trailing }), { planner: { maxGap: 0 } });
      const samples = await driver.read(tagsAt(block(0, 4)));
      expectNoWrongGood(samples);
      expect(samples[0]!.quality.severity).toBe("bad");
      expect(samples[0]!.quality.reason).toMatch(/do not line up/);
    });
  }
});

describe("a misalignment found while pipelining is a pipeline desync", () => {
  it("even when only one request is left in flight: the driver falls back to one at a time, the unit is not blamed", async () => {
    // Four requests in flight; the last to be answered is cut and resent whole, so the misalignment is found
    // after the other three were answered.
    const { driver } = await connect(
      (request) =>
        request.index === 3
          ? { kind: "normal", cut: 2, thenWhole: true, delayMs: 30 }
          : { kind: "normal", delayMs: request.index < 4 ? 5 : 0 },
      { maxInFlight: 4, planner: { maxGap: 0 } },
    );
    const samples = await driver.read(tagsAt([0, 20, 21, 40, 41, 42, 60, 61, 62, 63]));
    expectNoWrongGood(samples);
    expect(samples[9]!.quality.reason).toMatch(/do not line up/);
    expect(driver.maxInFlight).toBe(1);
    expect(driver.units()).toMatchObject([{ unitId: 1, consecutiveFailures: 0 }]);
  });
});
