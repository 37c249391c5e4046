import { afterEach, describe, expect, it } from "vitest";
import { SystemClock, defineTags, type Sample } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer } from "./raw-tcp-device";

// ADR 0041, amendment fix12v: once a gateway has shown that it answers out of order, an answer it owes holds its
// shape (requests of that shape fail unsent) until it comes. An answer really lost (the device never sends it) held
// that shape until the driver was restarted. The forget horizon (`transport.lostAnswerResyncMs`) resynchronises the
// link instead: the driver closes the TCP connection and opens a new one, on which no answer of the old one can
// come. Meanwhile the held shape's tags are bad with a reason naming the shape and the release time, and the
// driver's endpoint health names the held shape.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 200;
const HORIZON_MS = 1000;
const clock = new SystemClock();
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  ir0: { dataType: "uint16", address: "IR0@1" },
  hr40: { dataType: "uint16", address: "HR40@1" },
  hr10: { dataType: "uint16", address: "HR10@1" },
  // The same shape as HR10@1 at the same unit (a request another unit's would resynchronise at once: fix12aa).
  hr70: { dataType: "uint16", address: "HR70@1" },
  // Another shape again (holding-register/4): the slow read of a scan that overruns, never held itself.
  hr60: { dataType: "uint32", address: "HR60@1" },
  hr20u2: { dataType: "uint16", address: "HR20@2" },
  // Two registers: another shape (holding-register/4) than the one-register reads (holding-register/2).
  hr30: { dataType: "uint32", address: "HR30@1" },
  hr50u2: { dataType: "uint32", address: "HR50@2" },
});
const expected = new Map<string, number>([
  ["ir0", rawRegister(1, 0)],
  ["hr40", rawRegister(1, 40)],
  ["hr10", rawRegister(1, 10)],
  ["hr70", rawRegister(1, 70)],
  ["hr60", rawRegister(1, 60) * 0x10000 + rawRegister(1, 61)],
  ["hr20u2", rawRegister(2, 20)],
  ["hr30", rawRegister(1, 30) * 0x10000 + rawRegister(1, 31)],
  ["hr50u2", rawRegister(2, 50) * 0x10000 + rawRegister(2, 51)],
]);

/**
 * A gateway that answers each request after its own delay (out of order), stamps every answer with the MBAP header
 * of the newest request it received (any connection), and writes it to the connection its request came on: HR40@1
 * 300 ms late (after the fence sent in the pause: it shows that the gateway answers out of order), `late` as given
 * (`"lost"`: never), everything else at once.
 */
async function outOfOrderGateway(late: Record<string, number | "lost">) {
  let newest = { transactionId: 0, unitId: 0 };
  const device = await startRawTcpDevice((request) => {
    newest = { transactionId: request.transactionId, unitId: request.unitId };
    const key = `${request.functionCode}/${request.address}/${request.value}@${request.unitId}`;
    const delayMs = ({ "3/40/1@1": 300, ...late } as Record<string, number | "lost">)[key] ?? 1;
    if (delayMs === "lost") return { kind: "silent" };
    return {
      kind: "normal",
      delayMs,
      transactionId: () => newest.transactionId,
      unitId: () => newest.unitId,
    } as RawAnswer;
  });
  cleanups.push(() => device.stop());
  return device;
}

async function driverFor(port: number) {
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port, lostAnswerResyncMs: HORIZON_MS },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
    reconnect: { initialDelayMs: 20, jitter: 0 },
  });
  cleanups.push(() => driver.close());
  const reconnects: string[] = [];
  driver.onStatusChange(({ to, reason }) => {
    if (to === "reconnecting") reconnects.push(reason ?? "");
  });
  await driver.connect();
  return { driver, reconnects };
}

/**
 * A read's caller deadline, as the core's `acquisition.timeoutMs` gives it (`withTimeout` records it in the
 * process-wide registry `signalTimeLeft` reads, under its documented `Symbol.for` key): the read returns with
 * what it has shortly before `ms`, its requests still on the wire finishing in the background.
 */
function deadline(ms: number): AbortSignal {
  const controller = new AbortController();
  const registry = (globalThis as Record<symbol, unknown>)[Symbol.for("@kiln/core/signal-deadlines@1")];
  if (!(registry instanceof WeakMap)) throw new Error("no signal deadline registry: @kiln/core not loaded");
  registry.set(controller.signal, { clock, at: clock.now() + ms });
  return controller.signal;
}

/** Reads `names` together; the samples, each good one with a wrong value noted in `wrong`. */
async function read(driver: ModbusDriver, names: string[], wrong: string[], signal?: AbortSignal): Promise<Sample[]> {
  const samples = await driver.read(
    names.map((name) => tags.get(name)),
    signal,
  );
  samples.forEach((sample, index) => {
    const name = names[index]!;
    if (sample.quality.severity === "good" && sample.value !== expected.get(name))
      wrong.push(`${name}=${String(sample.value)} (true ${expected.get(name)})`);
  });
  return samples;
}

/** Makes the gateway show that it answers out of order: HR40@1's answer comes after the fence's own. */
async function showOutOfOrder(driver: ModbusDriver, wrong: string[]): Promise<void> {
  expect((await read(driver, ["ir0"], wrong))[0]!.quality.severity).toBe("good");
  await read(driver, ["hr40"], wrong); // times out; the fence in the pause gets its own answer first
  await pause(200); // HR40@1's answer comes, after the fence's
}

/** Reads `names` every 100 ms until each is good (at most `attempts` reads); how many reads it took. */
async function readUntilGood(driver: ModbusDriver, names: string[], wrong: string[], attempts = 60) {
  for (let reads = 1; reads <= attempts; reads++) {
    const samples = await read(driver, names, wrong);
    if (samples.every((sample) => sample.quality.severity === "good")) return reads;
    await pause(100);
  }
  return undefined;
}

describe("a lost answer on a device that answers out of order (ADR 0041, amendment fix12v)", () => {
  it("holds its shape, named in the quality and in health, only until the forget horizon resynchronises the link", async () => {
    const device = await outOfOrderGateway({ "3/10/1@1": "lost" });
    const { driver, reconnects } = await driverFor(device.port);
    const wrong: string[] = [];
    await showOutOfOrder(driver, wrong);
    await read(driver, ["hr10"], wrong); // times out; its answer never comes
    await pause(260); // past HR10@1's late bound, well before the horizon

    // Unit 1's own request of the held shape waits for the answer or the horizon (another unit's would resynchronise
    // in the next pause: modbus-held-shape-other-unit.integration.test.ts).
    const [held] = await read(driver, ["hr70"], wrong);
    expect(held!.quality.severity).toBe("bad");
    expect(held!.quality.reason).toMatch(
      /not sent: shape holding-register\/2 is held: the answer to read of 1 registers at holding-register 10 \(unit 1\)/,
    );
    expect(held!.quality.reason).toMatch(/out of order/);
    expect(held!.quality.reason).toMatch(/or at \d{4}-\d\d-\d\dT[\d:.]+Z by resynchronising the link/);
    const health = driver.endpoints().find((endpoint) => endpoint.endpoint === "held shape holding-register/2");
    expect(health).toMatchObject({ state: "offline" });
    expect(health!.nextProbeAt).toBeGreaterThan(Date.now());
    expect(reconnects).toEqual([]);

    // Without the horizon the shape was held until restart: no number of reads made it good.
    const reads = await readUntilGood(driver, ["hr70"], wrong);
    expect(reads).toBeDefined();
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]).toMatch(/resynchronising the link: the answer to read of 1 registers at holding-register 10/);
    expect(driver.endpoints().filter((endpoint) => endpoint.endpoint.startsWith("held shape"))).toEqual([]);
    expect(wrong).toEqual([]);
  }, 20_000);

  it("sibling: two lost answers of two shapes are both held, both named in health, and one resync releases both", async () => {
    const device = await outOfOrderGateway({ "3/10/1@1": "lost", "3/30/2@1": "lost" });
    const { driver, reconnects } = await driverFor(device.port);
    const wrong: string[] = [];
    await showOutOfOrder(driver, wrong);
    await read(driver, ["hr10"], wrong);
    // An answer between the two silences: three timeouts in a row would declare the link lost (a reconnect).
    expect((await read(driver, ["ir0"], wrong))[0]!.quality.severity).toBe("good");
    await read(driver, ["hr30"], wrong);
    await pause(260);
    expect(reconnects).toEqual([]);

    const samples = await read(driver, ["hr20u2", "hr50u2"], wrong);
    expect(samples.map((sample) => sample.quality.severity)).toEqual(["bad", "bad"]);
    expect(samples[0]!.quality.reason).toMatch(/shape holding-register\/2 is held/);
    expect(samples[1]!.quality.reason).toMatch(/shape holding-register\/4 is held/);
    const held = driver
      .endpoints()
      .map((endpoint) => endpoint.endpoint)
      .filter((name) => name.startsWith("held shape"));
    expect(held.sort()).toEqual(["held shape holding-register/2", "held shape holding-register/4"]);

    expect(await readUntilGood(driver, ["hr20u2", "hr50u2"], wrong)).toBeDefined();
    expect(reconnects).toHaveLength(1);
    expect(wrong).toEqual([]);
  }, 20_000);

  it("sibling: an answer that comes just after the horizon is never decoded as the next same-shape read's value", async () => {
    // HR10@1's answer comes 1300 ms after its request: past the horizon (1000 ms), while reads of its shape (HR20@2)
    // go every 100 ms. Released by time alone, a read of HR20@2 sent before it comes would take HR10@1's word (the
    // gateway stamps the newest request's header), good; released by resynchronising, it went to a closed connection.
    const device = await outOfOrderGateway({ "3/10/1@1": 1300 });
    const { driver, reconnects } = await driverFor(device.port);
    const wrong: string[] = [];
    await showOutOfOrder(driver, wrong);
    await read(driver, ["hr10"], wrong);
    await pause(260);
    expect((await read(driver, ["hr20u2"], wrong))[0]!.quality.severity).toBe("bad");
    expect(await readUntilGood(driver, ["hr20u2"], wrong)).toBeDefined();
    // Keep reading its shape until well after the late answer's time.
    for (let reads = 0; reads < 10; reads++) {
      await read(driver, ["hr20u2", "hr10"], wrong);
      await pause(100);
    }
    expect(reconnects).toHaveLength(1);
    expect(wrong).toEqual([]);
  }, 20_000);

  it("sibling (fix12y): two scan groups read back to back, one always overrunning its deadline, resynchronise once (fails without fix12y)", async () => {
    // adv12z F3: HR60@1 answers in 120 ms, its scan group's deadline is 100 ms, so its request is still on the wire
    // when the next read starts and the line is never idle; HR10@1's answer never comes.
    const device = await outOfOrderGateway({ "3/10/1@1": "lost", "3/60/2@1": 120 });
    const { driver, reconnects } = await driverFor(device.port);
    const wrong: string[] = [];
    await showOutOfOrder(driver, wrong);
    await read(driver, ["hr10"], wrong);
    const budget = HORIZON_MS + 2500;
    const [first] = await Promise.all([
      backToBack(driver, ["hr20u2", "ir0"], wrong, budget),
      backToBack(driver, ["hr60"], wrong, budget, () => deadline(100)),
    ]);
    expect(first.good).toBe(true);
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]).toMatch(/resynchronising the link: the answer to read of 1 registers at holding-register 10/);
    expect(wrong).toEqual([]);
  }, 20_000);
});

/**
 * Reads `names` back to back (no pause on the line; a read rejected while the resync reconnects is retried after 5
 * ms; each read with `signal()` if given) for `budgetMs`; whether `names` were ever all good in one read.
 */
async function backToBack(
  driver: ModbusDriver,
  names: string[],
  wrong: string[],
  budgetMs: number,
  signal?: () => AbortSignal,
) {
  const end = Date.now() + budgetMs;
  let good = false;
  while (Date.now() < end) {
    try {
      const samples = await read(driver, names, wrong, signal?.());
      good ||= samples.every((sample) => sample.quality.severity === "good") && samples.length > 0;
    } catch {
      await pause(5); // not connected while the driver reconnects
    }
    // One turn of the event loop, no pause: a read whose requests all fail at once settles in microtasks only, and
    // a loop of them would starve the reconnect's timer (a scan loop yields to timers too).
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { good };
}
