import { describe, expect, it } from "vitest";
import { KilnError } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import { modbusFailureOf } from "./modbus-failure";
import { ModbusRequestQueue, type ModbusFence, type ModbusRequestOptions } from "./modbus-request-queue";

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

/**
 * Runs requests on `queue` as a device that answers each `ms` after it went out (with exception `code` when one is
 * given), stepping `clock` 1 ms at a time until the request settles (at most `maxMs`); `started` records when each
 * went on the wire. Resolves with the answer, or with the error it was refused with.
 */
function deviceRunner(
  queue: ModbusRequestQueue,
  clock: SimulatedClock,
  started: [string, number][],
  maxMs = 300,
): (what: string, options: ModbusRequestOptions, ms: number, code?: number) => Promise<unknown> {
  return async (what, options, ms, code) => {
    const done = rejection(
      queue
        .run(
          () => {
            started.push([what, clock.now()]);
            return new Promise((resolve, reject) =>
              clock.setTimeout(() => {
                if (code === undefined) resolve(what);
                else reject(new KilnError("KILN_DEVICE_ERROR", `exception ${code}`, { details: { modbus: code } }));
              }, ms),
            );
          },
          what,
          undefined,
          options,
        )
        .then((value) => Promise.reject(value)),
    );
    let settled = false;
    void done.then(() => (settled = true));
    for (let i = 0; i < maxMs && !settled; i++) await clock.advance(1);
    return done;
  };
}

describe("ModbusRequestQueue", () => {
  /** A fence builder recording what it was asked to avoid; its read resolves with `answer` (or never). */
  function fences(clock: SimulatedClock, started: [string, number][], answer: () => Promise<unknown>) {
    return (unsure: (shape: string) => boolean): ModbusFence | undefined => {
      const shape = ["hr/4", "hr/6", "hr/8"].find((candidate) => !unsure(candidate));
      if (shape === undefined) return undefined;
      return { shape, run: () => (started.push([`fence ${shape}`, clock.now()]), answer()) };
    };
  }

  it("separateShapes: a read of another size goes alone between two same-shape requests (fix12d)", async () => {
    const clock = new SimulatedClock();
    const started: [string, number][] = [];
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100, separateShapes: true });
    // The id proof's first read is answered only after its second (fix12e): the ids are not proven, so the
    // separators of fix12d stay on for this connection.
    let calls = 0;
    const fence = fences(clock, started, () =>
      ++calls === 1 ? new Promise((resolve) => setTimeout(() => resolve([]), 5)) : Promise.resolve([]),
    );
    const read = (what: string, shape: string, unseparated = false) =>
      queue.run(() => (started.push([what, clock.now()]), Promise.resolve(what)), what, undefined, {
        shape,
        fence,
        unseparated,
      });
    expect(queue.shapesSeparated).toBe(true);
    expect(
      await Promise.all([read("HR0", "hr/2"), read("HR10", "hr/2"), read("HR11", "hr/2"), read("HR20", "hr/4")]),
    ).toEqual(["HR0", "HR10", "HR11", "HR20"]);
    // HR10 has HR0's shape: the connection's id proof goes first (two reads of other sizes together); it fails, so
    // before HR11 (HR10's shape) a read of another size (the first the builder finds that is not unsure) goes alone.
    expect(started.map(([what]) => what)).toEqual([
      "HR0",
      "fence hr/4",
      "fence hr/6",
      "HR10",
      "fence hr/4",
      "HR11",
      "HR20",
    ]);
    expect(queue.idProof).toBe("failed");
    expect(queue.shapesSeparated).toBe(true);
    expect(queue.separators).toBe(1);
    expect(queue.lastShape).toBe("hr/4");
    // The bit write's second read goes right after its first.
    started.length = 0;
    await Promise.all([read("HR30", "hr/2"), read("HR30 again", "hr/2", true)]);
    expect(started.map(([what]) => what)).toEqual(["HR30", "HR30 again"]);
    // Past the late bound of the request before, no separator: its shifted answer would have come as a stray.
    started.length = 0;
    await clock.advance(200);
    expect(queue.lastShape).toBeUndefined();
    await read("HR40", "hr/2");
    expect(started.map(([what]) => what)).toEqual(["HR40"]);
    expect(queue.separators).toBe(1);
  });

  it("separateShapes: a peer answering the id proof's two reads in order, each with its own id, needs no separator on that connection (fix12e)", async () => {
    const clock = new SimulatedClock();
    const started: [string, number][] = [];
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100, separateShapes: true });
    const fence = fences(clock, started, () => Promise.resolve([]));
    const read = (what: string) =>
      queue.run(() => (started.push([what, clock.now()]), Promise.resolve(what)), what, undefined, {
        shape: "hr/2",
        fence,
      });
    await Promise.all([read("HR0"), read("HR10"), read("HR11"), read("HR12")]);
    // The two proof reads went on the wire together; once proven, same-shape requests follow each other.
    expect(started.map(([what]) => what)).toEqual(["HR0", "fence hr/4", "fence hr/6", "HR10", "HR11", "HR12"]);
    expect(queue.idProof).toBe("passed");
    expect(queue.shapesSeparated).toBe(false);
    expect(queue.separators).toBe(0);
    expect(queue.lastShape).toBeUndefined();
    // A new connection may reach another peer: proven again (sibling).
    queue.newConnection();
    expect(queue.idProof).toBe("untried");
    expect(queue.shapesSeparated).toBe(true);
    started.length = 0;
    await clock.advance(200); // past the late bound of the last request of the old connection
    await Promise.all([read("HR0"), read("HR10")]);
    expect(started.map(([what]) => what)).toEqual(["HR0", "fence hr/4", "fence hr/6", "HR10"]);
    expect(queue.idProof).toBe("passed");
  });

  it("separateShapes: the id proof's second read sent in the same tick as its first (both on the wire before any answer)", async () => {
    const clock = new SimulatedClock();
    const started: [string, number][] = [];
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100, separateShapes: true });
    const gate = deferred<unknown>();
    let calls = 0;
    const fence = fences(clock, started, () => (++calls === 1 ? gate.promise : Promise.resolve([])));
    const read = (what: string) =>
      queue.run(() => (started.push([what, clock.now()]), Promise.resolve(what)), what, undefined, {
        shape: "hr/2",
        fence,
      });
    const reads = Promise.all([read("HR0"), read("HR10")]);
    await clock.advance(0);
    // The first proof read is unanswered, and the second is on the wire already.
    expect(started.map(([what]) => what)).toEqual(["HR0", "fence hr/4", "fence hr/6"]);
    gate.resolve([]);
    await reads;
    // Answered after the second: not proven (conservative), separators stay on.
    expect(queue.idProof).toBe("failed");
  });

  it("boundShapeRuns (RTU): after an anomaly, a read of another size after 8 of one shape in a row, for a minute (fix12h)", async () => {
    const clock = new SimulatedClock();
    const started: [string, number][] = [];
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100, boundShapeRuns: true });
    const fence = fences(clock, started, () => Promise.resolve([]));
    const read = (what: string, silent = false) =>
      queue.run(
        () => (started.push([what, clock.now()]), silent ? new Promise<never>(() => undefined) : Promise.resolve(what)),
        what,
        undefined,
        { shape: "hr/2", fence },
      );
    const run = (count: number) => Promise.all(Array.from({ length: count }, (_, index) => read(`HR${index}`)));
    const sent = () => started.map(([what]) => what);
    // A healthy line: no separator, no proof (RTU has no ids to prove).
    await run(20);
    expect(sent()).toEqual(Array.from({ length: 20 }, (_, index) => `HR${index}`));
    expect(queue.separators).toBe(0);
    expect(queue.idProof).toBe("untried");
    // A request abandoned (its timeout): its answer may still come and shift the stream.
    const silent = read("HR99", true).catch(() => undefined);
    await clock.advance(100);
    await silent;
    await clock.advance(200); // its late bound (the fence waits for it on RTU only with fenceAfterLateBound)
    started.length = 0;
    const reads = run(20);
    await clock.advance(0);
    await reads;
    // (The fence went in the pause after the timeout.) At most 8 of one shape in a row: a separator before the 9th
    // and the 17th, and no id proof (RTU has no ids to prove).
    const hr = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => `HR${from + index}`);
    expect(sent()).toEqual([...hr(0, 8), "fence hr/4", ...hr(8, 16), "fence hr/4", ...hr(16, 20)]);
    expect(queue.separators).toBe(2);
    expect(queue.idProof).toBe("untried");
    // A minute later with no anomaly since: back to back again.
    await clock.advance(60_000);
    const before = queue.separators;
    started.length = 0;
    await run(20);
    expect(sent()).toEqual(Array.from({ length: 20 }, (_, index) => `HR${index}`));
    expect(queue.separators).toBe(before);
  });

  it("without separateShapes, same-shape requests go back to back as before (sibling)", async () => {
    const clock = new SimulatedClock();
    const started: [string, number][] = [];
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const fence = fences(clock, started, () => Promise.resolve([]));
    const read = (what: string) =>
      queue.run(() => (started.push([what, clock.now()]), Promise.resolve(what)), what, undefined, {
        shape: "hr/2",
        fence,
      });
    await Promise.all([read("HR0"), read("HR10")]);
    expect(started.map(([what]) => what)).toEqual(["HR0", "HR10"]);
    expect(queue.separators).toBe(0);
    expect(queue.lastShape).toBeUndefined();
  });

  it("with no fence to build, resynchronises on a backoff instead of failing for good (adv12s H2)", async () => {
    const clock = new SimulatedClock();
    const resyncs: string[] = [];
    const queue = new ModbusRequestQueue({
      clock,
      timeoutMs: 100,
      lateAnswerGuardMs: 100,
      onResync: (reason) => resyncs.push(reason),
    });
    // The only fence inside what answered has the requests' own shape (one-register reads).
    const fence = (unsure: (shape: string) => boolean): ModbusFence | undefined =>
      unsure("hr/2") ? undefined : { shape: "hr/2", exceptionShape: "hr", run: () => Promise.resolve([]) };
    const options = { shape: "hr/2", exceptionShape: "hr", fence };
    const silent = rejection(queue.run(() => new Promise(() => undefined), "HR0", undefined, options));
    await clock.advance(100);
    expect(modbusFailureOf(await silent)).toBe("timeout");
    const stuck = await rejection(queue.run(() => Promise.resolve(1), "HR1", undefined, options));
    expect(stuck).toMatchObject({ details: { sent: false } });
    expect((stuck as Error).message).toMatch(/no fence of a distinct shape could be built.*resynchronised at/);
    // Named while it lasts (the driver's "answer stream" endpoint), with when it is resynchronised.
    expect(queue.alignment).toMatchObject({ aligned: false, reason: expect.stringMatching(/no fence/) });
    expect(queue.alignment.resyncAt).toBe(clock.now() + 200);
    // Past the backoff, in the pause: the resync is asked (the caller reconnects), and the shapes sent are forgotten.
    await clock.advance(200);
    expect(resyncs).toEqual([expect.stringMatching(/no fence of a distinct shape could be built/)]);
    queue.fail(new KilnError("KILN_CONNECTION_FAILED", "resync", { details: { modbus: "disconnected" } }));
    queue.newConnection();
    await expect(queue.run(() => Promise.resolve(7), "HR1", undefined, options)).resolves.toBe(7);
    expect(queue.alignment.aligned).toBe(true);
  });

  it("a 4 or 6 in the unit's usual answer time is final; one later than it holds its shape until the late bound (fix12k)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    // The device answers in 5 ms; `code` makes it answer with that exception instead, after `ms`.
    const device = deviceRunner(queue, clock, started);
    const read = (what: string, ms: number, code?: number): Promise<unknown> =>
      device(what, { shape: "hr/2", exceptionShape: "hr" }, ms, code);
    // Before any answer was timed, a 6 is not known to be the device's: its shape waits until the late bound.
    const firstAt = clock.now();
    expect(await read("busy first", 5, 6)).toMatchObject({ details: { modbus: 6 } });
    expect(queue.alignment.aligned).toBe(false);
    expect(await read("HR0", 5)).toBe("HR0");
    expect(started.at(-1)).toEqual(["HR0", firstAt + 200]);
    for (const what of ["HR1", "HR2", "HR3", "HR4"]) expect(await read(what, 5)).toBe(what);
    // Now the usual time is 5 ms: a 6 in 5 ms is the device's own answer, and the next read goes at once.
    const busyAt = clock.now();
    expect(await read("busy", 5, 6)).toMatchObject({ details: { modbus: 6 } });
    expect(await read("HR5", 5)).toBe("HR5");
    expect(started.at(-1)![1]).toBeLessThan(busyAt + 20);
    // A 4 (or 6) 50 ms after its request (past twice the usual time plus 10 ms) is a queued gateway's giving up:
    // the device's own answer may still come, so the next read of that shape waits for the late bound.
    const lateAt = clock.now();
    expect(await read("failure late", 50, 4)).toMatchObject({ details: { modbus: 4 } });
    expect(await read("HR6", 5)).toBe("HR6");
    expect(started.at(-1)).toEqual(["HR6", lateAt + 200]);
  });

  it("a unit's usual time is judged per serial byte: a short read's late 4 is not hidden by the unit's large blocks (fix12n)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    // Like a 9600-baud line behind a gateway: a 120-register block answers in 60 ms, a one-register read in 5 ms.
    const block = { shape: "hr/240", exceptionShape: "hr", unit: 1, serialBytes: { request: 8, answer: 245 } };
    const short = { shape: "hr/2", exceptionShape: "hr", unit: 1, serialBytes: { request: 8, answer: 7 } };
    const read = deviceRunner(queue, clock, started);
    // Blocks are most of the unit's answers: their median is 60 ms, and twice it plus 10 ms is 130 ms.
    for (const [what, options, ms] of [
      ["B0", block, 60],
      ["S0", short, 5],
      ["B1", block, 60],
      ["B2", block, 60],
      ["S1", short, 5],
      ["B3", block, 60],
    ] as const)
      expect(await read(what, options, ms)).toBe(what);
    // The device's own busy answer to a short read (5 ms) or to a block (an exception is as short) is final.
    for (const options of [short, block]) {
      const busyAt = clock.now();
      expect(await read("busy", options, 5, 6)).toMatchObject({ details: { modbus: 6 } });
      expect(await read("S", short, 5)).toBe("S");
      expect(started.at(-1)![1]).toBeLessThan(busyAt + 20);
    }
    // A gateway's 4 at 40 ms for a short read: under the median rule (130 ms) it was final and the next short read
    // went at once, to take the device's late answer; an exchange of that size usually takes about 5 ms.
    const lateAt = clock.now();
    expect(await read("failure late", short, 40, 4)).toMatchObject({ details: { modbus: 4 } });
    expect(await read("S2", short, 5)).toBe("S2");
    expect(started.at(-1)).toEqual(["S2", lateAt + 200]);
  });

  it("a large write's own transfer counts once: a gateway's 4 or 6 150 ms after the write went out is late, the device's busy answer final (adv12o HIGH-1)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1_000, lateAnswerGuardMs: 1_000 });
    const started: [string, number][] = [];
    // A 9600-baud line behind a gateway (about 1 ms a byte), the device answering 3 ms after a request is in: a
    // one-register read (8 + 7 bytes) takes 18 ms, a 100-register write (fc16: 209 + 8 bytes) 220 ms.
    const write = { shape: "fc16/100/100", exceptionShape: "fc16", unit: 1, serialBytes: { request: 209, answer: 8 } };
    const short = { shape: "hr/2", exceptionShape: "hr", unit: 1, serialBytes: { request: 8, answer: 7 } };
    const run = deviceRunner(queue, clock, started, 3_000);
    for (let i = 0; i < 3; i++) {
      expect(await run(`W${i}`, write, 220)).toBe(`W${i}`);
      expect(await run(`S${i}`, short, 18)).toBe(`S${i}`);
    }
    // The device's own busy answer to a write: the write's 209 bytes, its 3 ms and the 5-byte exception: final.
    const busyAt = clock.now();
    expect(await run("busy", write, 217, 6)).toMatchObject({ details: { modbus: 6 } });
    expect(await run("W", write, 220)).toBe("W");
    expect(started.at(-1)![1]).toBeLessThan(busyAt + 240);
    // A gateway giving up 150 ms after the write went out (at 359 ms): under twice the write's usual time (444 ms)
    // this was final, and the device's late echo answered the next write of that size, which never reached it.
    for (const code of [4, 6]) {
      const lateAt = clock.now();
      expect(await run("gave up", write, 359, code)).toMatchObject({ details: { modbus: code } });
      expect(await run("next", write, 220)).toBe("next");
      expect(started.at(-1)![1]).toBeGreaterThanOrEqual(lateAt + 1_000);
    }
  });

  it("a short read's 4 is late when every answer timed was a block of another size: no time per byte can be told (adv12o MEDIUM-3)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const block = { shape: "hr/240", exceptionShape: "hr", unit: 1, serialBytes: { request: 8, answer: 245 } };
    const short = { shape: "hr/2", exceptionShape: "hr", unit: 1, serialBytes: { request: 8, answer: 7 } };
    const read = deviceRunner(queue, clock, started);
    // A unit read in 16 blocks a scan: the last 16 answers timed are all blocks of 60 ms (twice plus 10: 130 ms).
    for (let i = 0; i < 16; i++) expect(await read(`B${i}`, block, 60)).toBe(`B${i}`);
    // A block's own busy answer is judged by the blocks' median, as before: final, the next block goes at once.
    const busyAt = clock.now();
    expect(await read("busy", block, 5, 6)).toMatchObject({ details: { modbus: 6 } });
    expect(await read("B", block, 60)).toBe("B");
    expect(started.at(-1)![1]).toBeLessThan(busyAt + 20);
    // A gateway's 4 at 80 ms for the short read: under the blocks' median rule it was final and the next short read
    // went at once (to take the device's late answer); nothing timed tells what a short exchange takes.
    const lateAt = clock.now();
    expect(await read("failure late", short, 80, 4)).toMatchObject({ details: { modbus: 4 } });
    expect(await read("S", short, 5)).toBe("S");
    expect(started.at(-1)).toEqual(["S", lateAt + 200]);
  });

  it("without serial bytes, or with every answer of one size, the usual time is the median as before (fix12n)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const device = deviceRunner(queue, clock, started);
    const run = (what: string, ms: number, code?: number, sized = true): Promise<unknown> =>
      device(
        what,
        { shape: "hr/2", exceptionShape: "hr", unit: 1, ...(sized ? { serialBytes: { request: 8, answer: 7 } } : {}) },
        ms,
        code,
      );
    for (const what of ["HR0", "HR1", "HR2", "HR3"]) expect(await run(what, 20)).toBe(what);
    // One size: a 6 in 45 ms is under twice 20 ms plus 10 ms, final, with or without its bytes.
    for (const sized of [true, false]) {
      const busyAt = clock.now();
      expect(await run("busy", 45, 6, sized)).toMatchObject({ details: { modbus: 6 } });
      expect(await run("HR", 20)).toBe("HR");
      expect(started.at(-1)![1]).toBeLessThan(busyAt + 70);
    }
  });

  it("sibling: a fence refused with an exception proves the stream when no other request of its function can answer (adv12s H2)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const refused = new KilnError("KILN_DEVICE_ERROR", "Modbus exception 2", { details: { modbus: 2 } });
    let fences = 0;
    const fence = (): ModbusFence => ({
      shape: "ir/4",
      exceptionShape: "ir",
      run: () => (fences++, Promise.reject(refused)),
    });
    const silent = rejection(
      queue.run(() => new Promise(() => undefined), "HR0", undefined, { shape: "hr/2", exceptionShape: "hr", fence }),
    );
    await clock.advance(100);
    await silent;
    // The fence's own exception shape was counted as sent: before, no refused fence ever proved anything.
    await clock.advance(100);
    const next = queue.run(() => Promise.resolve(3), "HR1", undefined, { shape: "hr/2", exceptionShape: "hr", fence });
    await clock.advance(200);
    await expect(next).resolves.toBe(3);
    expect(fences).toBe(1);
    expect(queue.alignment.aligned).toBe(true);
  });

  it("an answer coming past its late bound after a fence's proof shows the device answers out of order (adv12s M2)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => Promise.resolve([]));
    const never = () => new Promise(() => undefined);
    const first = rejection(queue.run(never, "HR0", undefined, { shape: "hr/2", fence }));
    await clock.advance(100);
    await first;
    const next = queue.run(() => Promise.resolve(1), "HR1", undefined, { shape: "hr/2", fence });
    await clock.advance(200); // the fence proves the stream; HR1 waits for HR0's late bound (200), then goes
    await expect(next).resolves.toBe(1);
    // HR0's answer comes past its bound, after the fence's own: evidence, kept although its bound passed.
    queue.unasked("late", { shape: "hr/2" });
    const lost = rejection(queue.run(never, "HR2", undefined, { shape: "hr/2", fence }));
    await clock.advance(100);
    await lost;
    await clock.advance(200);
    // Known out of order: HR2's owed answer holds its shape past its bound (before: forgotten at the bound).
    expect(queue.held.map((held) => held.owedBy)).toEqual(["HR2"]);
  });

  it("an answer that may be a request's own, sent since the proof, is no evidence of answering out of order (adv12 MEDIUM 3)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => Promise.resolve([]));
    const never = () => new Promise(() => undefined);
    const first = rejection(queue.run(never, "HR0", undefined, { shape: "hr/2", fence }));
    await clock.advance(100);
    await first;
    const next = queue.run(() => Promise.resolve(1), "HR1", undefined, { shape: "hr/2", fence });
    await clock.advance(200);
    await expect(next).resolves.toBe(1);
    // HR3 of the same shape on the wire; an answer of its shape comes with another request's transaction id (an
    // in-order transparent gateway stamps the newest header) and is refused: it may be HR3's own, not HR0's.
    const own = deferred<number>();
    const third = queue.run(() => own.promise, "HR3", undefined, { shape: "hr/2", fence });
    await clock.advance(1);
    queue.unfit({ shape: "hr/2" });
    own.resolve(3);
    await expect(third).resolves.toBe(3);
    const lost = rejection(queue.run(never, "HR2", undefined, { shape: "hr/2", fence }));
    await clock.advance(100);
    await lost;
    await clock.advance(200);
    // Not classified out of order: HR2's shape is free at its bound (before: held until its answer or the horizon).
    expect(queue.held).toEqual([]);
  });

  it("sibling: a shapeless dropped answer while a request is on the wire is no evidence either (adv12 MEDIUM 3)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => Promise.resolve([]));
    const never = () => new Promise(() => undefined);
    const first = rejection(queue.run(never, "HR0", undefined, { shape: "hr/2", fence }));
    await clock.advance(100);
    await first;
    const own = deferred<number>();
    const next = queue.run(() => own.promise, "IR1", undefined, { shape: "ir/2", fence });
    await clock.advance(50); // the fence proves the stream; IR1 (another shape) goes at once
    queue.unasked("a cut frame");
    own.resolve(1);
    await expect(next).resolves.toBe(1);
    const lost = rejection(queue.run(never, "HR2", undefined, { shape: "hr/2", fence }));
    await clock.advance(400);
    await lost;
    await clock.advance(200);
    expect(queue.held).toEqual([]);
  });

  it("after a timeout sends a fence alone and trusts nothing before its own answer (adv12s F1)", async () => {
    const clock = new SimulatedClock();
    const changes: boolean[] = [];
    const queue = new ModbusRequestQueue({
      clock,
      timeoutMs: 100,
      lateAnswerGuardMs: 100,
      onAlignment: (change) => changes.push(change.aligned),
    });
    const started: [string, number][] = [];
    const fenceAnswer = deferred<unknown>();
    const fence = fences(clock, started, () => fenceAnswer.promise);
    const run = (name: string, shape: string) =>
      queue.run(() => (started.push([name, clock.now()]), Promise.resolve(name)), name, undefined, { shape, fence });
    const start = clock.now();
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, { shape: "hr/2", fence })
      .catch(() => "timed out");
    await clock.advance(100);
    expect(await silent).toBe("timed out");
    expect(queue.alignment.aligned).toBe(false);
    // Another shape waits too: nothing is trusted before the fence's own answer.
    const other = run("IR0", "ir/2");
    await clock.advance(0);
    expect(started).toEqual([["fence hr/4", start + 100]]);
    // The late answer comes past its bound (send + 200 ms) and is dropped by the client: the fence's own follows.
    await clock.advance(150);
    queue.unasked("the late answer of HR100");
    fenceAnswer.resolve([]);
    await clock.advance(0);
    expect(await other).toBe("IR0");
    expect(queue.alignment.aligned).toBe(true);
    expect(changes).toEqual([false, true]);
  });

  it("proves each scope on its own: another unit's requests go unfenced, a fence waits for its unit's late bound (ADR 0041 fix12w)", async () => {
    const clock = new SimulatedClock();
    let fenceTimeouts = 0;
    const queue = new ModbusRequestQueue({
      clock,
      timeoutMs: 100,
      lateAnswerGuardMs: 100,
      fenceAfterLateBound: true,
      onFenceTimeout: () => fenceTimeouts++,
    });
    const started: [string, number][] = [];
    const silentFence = fences(clock, started, () => new Promise(() => undefined));
    const never = () => new Promise<string>(() => undefined);
    const start = clock.now();
    // Unit 2 (a busy RTU device) does not answer HR20: only scope "2" is suspect.
    const late = rejection(queue.run(never, "HR20@2", undefined, { shape: "2/hr/2", scope: "2", fence: silentFence }));
    await clock.advance(100);
    expect(modbusFailureOf(await late)).toBe("timeout");
    expect(queue.alignment.aligned).toBe(false);
    // Unit 1 is proven apart: its read goes at once, with no fence.
    const live = queue.run(() => (started.push(["HR0@1", clock.now()]), Promise.resolve(1)), "HR0@1", undefined, {
      shape: "1/hr/2",
      scope: "1",
      fence: fences(clock, started, () => Promise.resolve([])),
    });
    await clock.advance(0);
    expect(await live).toBe(1);
    // Unit 2's next read waits for a fence at unit 2, sent once HR20's answer is past its late bound (200: a busy
    // device ignores what it gets before); no answer: the read fails unsent, the fence's silence is counted.
    const next = rejection(queue.run(never, "HR40@2", undefined, { shape: "2/hr/2", scope: "2", fence: silentFence }));
    await clock.advance(300);
    expect(await next).toMatchObject({ details: { sent: false } });
    // The next fence does not wait for the silent fence's bound (a late answer to it would not fit the next one).
    const again = rejection(queue.run(never, "HR40@2", undefined, { shape: "2/hr/2", scope: "2", fence: silentFence }));
    await clock.advance(200);
    expect(await again).toMatchObject({ details: { sent: false } });
    expect(started).toEqual([
      ["HR0@1", start + 100],
      ["fence hr/4", start + 200],
      ["fence hr/6", start + 400],
    ]);
    expect(fenceTimeouts).toBe(2);
  });

  it("clears the ledger once the fence proved every late answer came: the next same-shape read goes at once (adv12s F4)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fenceAnswer = deferred<unknown>();
    const fence = fences(clock, started, () => fenceAnswer.promise);
    const start = clock.now();
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, { shape: "hr/2", fence })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    const same = queue.run(() => (started.push(["HR0", clock.now()]), Promise.resolve("HR0")), "HR0", undefined, {
      shape: "hr/2",
      fence,
    });
    await clock.advance(20);
    queue.unasked("the late answer of HR100"); // it came, 120 ms after its request: dropped by the patient fence
    fenceAnswer.resolve([]);
    await clock.advance(0);
    await same;
    // Not held until HR100's late bound (start + 200): its answer has come, and nothing older can.
    expect(started).toEqual([
      ["fence hr/4", start + 100],
      ["HR0", start + 120],
    ]);
  });

  it("sibling: a late answer not seen yet keeps its shape's ledger until the bound even after the proof (answers out of order)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => Promise.resolve([]));
    const start = clock.now();
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, { shape: "hr/2", fence })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    const same = queue.run(() => (started.push(["HR0", clock.now()]), Promise.resolve("HR0")), "HR0", undefined, {
      shape: "hr/2",
      fence,
    });
    const other = queue.run(() => (started.push(["IR0", clock.now()]), Promise.resolve("IR0")), "IR0", undefined, {
      shape: "ir/2",
      fence,
    });
    await clock.advance(100);
    await Promise.all([same, other]);
    expect(started).toEqual([
      ["fence hr/4", start + 100],
      ["HR0", start + 200],
      ["IR0", start + 200],
    ]);
  });

  /**
   * A queue whose device has shown it answers out of order (IR0's answer came after a fence's own) and then lost
   * HR0's answer (shape hr/2): past HR0's late bound, hr/2 is held. Horizon 1000 ms; timeout and guard 100 ms.
   */
  async function heldQueue(resyncs: string[], exceptionShape?: string) {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({
      clock,
      timeoutMs: 100,
      lateAnswerGuardMs: 100,
      resyncAfterMs: 1000,
      onResync: (reason) => resyncs.push(reason),
    });
    queue.newConnection();
    const fence = fences(clock, [], () => Promise.resolve([]));
    const never = () => new Promise<string>(() => undefined);
    await queue.run(() => Promise.resolve("live"), "live read", undefined, { shape: "hr/2", fence });
    const late = queue.run(never, "IR0", undefined, { shape: "ir/2", fence }).catch(() => undefined);
    await clock.advance(100);
    await late;
    await clock.advance(0); // the fence in the pause gets its own answer
    queue.unasked("IR0's answer, after the fence's", { shape: "ir/2" });
    const lostAt = clock.now();
    const lost = queue
      .run(never, "HR0", undefined, {
        shape: "hr/2",
        fence,
        ...(exceptionShape === undefined ? {} : { exceptionShape }),
      })
      .catch(() => undefined);
    await clock.advance(100);
    await lost;
    await clock.advance(100); // past HR0's late bound
    const read = (what: string) =>
      queue
        .run(() => Promise.resolve(what), what, undefined, { shape: "hr/2", fence })
        .catch((error: unknown) => error);
    return { clock, queue, lostAt, read };
  }

  it("releases a shape held by a lost answer on an out-of-order device only by a resync, asked once, even while a read is in progress (ADR 0041 fix12v, fix12y)", async () => {
    const resyncs: string[] = [];
    const { clock, queue, lostAt, read } = await heldQueue(resyncs);
    const held = await read("HR20");
    expect(KilnError.is(held, "KILN_DEVICE_ERROR")).toBe(true);
    expect((held as KilnError).details).toMatchObject({ sent: false, heldShape: "hr/2", releaseAt: lostAt + 1000 });
    expect((held as KilnError).message).toMatch(
      /shape hr\/2 is held: the answer to HR0, sent at .*released when it comes, or at/,
    );
    expect(queue.held).toEqual([{ shape: "hr/2", owedBy: "HR0", since: lostAt, releaseAt: lostAt + 1000 }]);
    // Past the horizon while a read is in progress (a background hold, reads back to back): the resync no longer
    // waits for a pause that may never come (adv12z F3). No request is admitted from then on, and with nothing on
    // the wire the resync is asked at once; the request queued meanwhile is left to the caller's reconnect to fail.
    await clock.advance(1000);
    const releaseRead = queue.holdBackground();
    expect((await read("HR20")) as KilnError).toMatchObject({ details: { sent: false } });
    const other = queue
      .run(() => Promise.resolve("IR4"), "IR4", undefined, { shape: "ir/8" })
      .catch((error: unknown) => error);
    await clock.advance(0);
    expect(resyncs).toHaveLength(1);
    expect(resyncs[0]).toMatch(/the answer to HR0 \(shape hr\/2\).*never came/);
    queue.fail(new Error("reconnecting"));
    expect(await other).toMatchObject({ message: "reconnecting" });
    releaseRead();
    // Until the caller has opened a new connection the shape stays held, and no second resync is asked.
    expect((await read("HR20")) as KilnError).toMatchObject({ details: { sent: false } });
    await clock.advance(0);
    expect(resyncs).toHaveLength(1);
    queue.newConnection();
    expect(queue.held).toEqual([]);
    const next = read("HR20");
    await clock.advance(0);
    expect(await next).toBe("HR20");
  });

  it("sibling (fix12y): past the horizon a request on the wire finishes first; nothing else is admitted, then the resync is asked", async () => {
    const resyncs: string[] = [];
    const { clock, queue, read } = await heldQueue(resyncs);
    await clock.advance(1000);
    const releaseRead = queue.holdBackground();
    let answer: (value: string) => void = () => undefined;
    const onWire = queue.run(() => new Promise<string>((resolve) => (answer = resolve)), "IR0", undefined, {
      shape: "ir/2",
    });
    await clock.advance(0);
    const held = read("HR20"); // queued behind IR0: found held, past the horizon, when IR0 is done
    let sent = false;
    const behind = queue
      .run(() => ((sent = true), Promise.resolve("IR8")), "IR8", undefined, { shape: "ir/4" })
      .catch((error: unknown) => error);
    await clock.advance(0);
    expect(resyncs).toEqual([]); // IR0 is on the wire
    answer("IR0");
    expect(await onWire).toBe("IR0");
    expect((await held) as KilnError).toMatchObject({ details: { sent: false, heldShape: "hr/2" } });
    await clock.advance(0);
    expect(resyncs).toHaveLength(1);
    expect(sent).toBe(false); // never admitted once the resync was due
    queue.fail(new Error("reconnecting"));
    expect(await behind).toMatchObject({ message: "reconnecting" });
    releaseRead();
  });

  it("sibling: a new connection opened for any reason (a lost link) releases a held shape; one resync asked per connection", async () => {
    const resyncs: string[] = [];
    const { clock, queue, read } = await heldQueue(resyncs);
    await clock.advance(10_000);
    expect((await read("HR20")) as KilnError).toMatchObject({ details: { sent: false, heldShape: "hr/2" } });
    await clock.advance(0);
    expect(resyncs).toHaveLength(1); // past the horizon: asked
    // A connection lost and reopened for another reason (before any resync) releases it too.
    queue.newConnection();
    const next = read("HR20");
    await clock.advance(0);
    expect(await next).toBe("HR20");
  });

  it("on an out-of-order device an exception of a function whose answer is owed past its late bound is not trusted; past the horizon it asks the resync (ADR 0041 fix12u, adv12v)", async () => {
    const resyncs: string[] = [];
    const { clock, queue, lostAt } = await heldQueue(resyncs, "hr");
    const gatewayFailed = new KilnError("KILN_DEVICE_ERROR", "exception 11", { details: { modbus: 11 } });
    // Another data shape (not held), the same function: the dead unit's late exception 11 may land on it.
    // Each untrusted exception leaves its own request's answer owed (its shape held in turn): a new shape each time.
    let size = 8;
    const refuse = async () => {
      size += 2;
      const outcome = queue
        .run(() => Promise.reject(gatewayFailed), `HR0 x${size / 2} at the live unit`, undefined, {
          shape: `hr/${size}`,
          exceptionShape: "hr",
        })
        .catch((caught: unknown) => caught);
      await clock.advance(0);
      return outcome;
    };
    const untrusted = await refuse();
    expect(modbusFailureOf(untrusted)).toBeUndefined();
    expect(untrusted).toMatchObject({ code: "KILN_DEVICE_ERROR", details: { unprovenException: 11 } });
    expect((untrusted as KilnError).message).toMatch(/the answer to HR0, sent at .*answers out of order/);
    expect(resyncs).toEqual([]);
    // An exception of another function is trusted.
    const inputRefused = await queue
      .run(() => Promise.reject(gatewayFailed), "IR0", undefined, { shape: "ir/2", exceptionShape: "ir" })
      .catch((caught: unknown) => caught);
    expect(modbusFailureOf(inputRefused)).toBe(11);
    // Past HR0's forget horizon an untrusted exception asks the resync (as a held shape does).
    await clock.advance(lostAt + 1000 - clock.now());
    expect(await refuse()).toMatchObject({ details: { unprovenException: 11 } });
    await clock.advance(0);
    expect(resyncs).toHaveLength(1);
    expect(resyncs[0]).toMatch(/the answer to HR0, .*never came, and exceptions of its function are not trusted/);
    queue.fail(new Error("reconnecting"));
    queue.newConnection();
    // On the new connection nothing of the old one can come: past every late bound, an exception is its own again.
    await clock.advance(300);
    expect(modbusFailureOf(await refuse())).toBe(11);
  });

  // Pinned, not a regression test: a fence's own exception shape is counted as sent since the last proof when it
  // goes, so its exception never proved the stream before either; `#strayOwedBy` in the fence path is defensive.
  it("sibling (fix12u, pinned): on an out-of-order device a fence answered by an exception of a function whose answer is owed proves nothing", async () => {
    const resyncs: string[] = [];
    const { clock, queue } = await heldQueue(resyncs, "hr");
    const gatewayFailed = new KilnError("KILN_DEVICE_ERROR", "exception 11", { details: { modbus: 11 } });
    let refuse = false;
    const fenced: string[] = [];
    // The fence reads holding registers (like the live unit's last read): HR0's late exception would fit it.
    const fence = (): ModbusFence => ({
      shape: "hr/6",
      exceptionShape: "hr",
      run: () => (
        fenced.push(refuse ? "refused" : "answered"),
        refuse ? Promise.reject(gatewayFailed) : Promise.resolve([])
      ),
    });
    // A fence's own data answer proves the stream (HR0's answer stays owed: the device answers out of order).
    const answered = queue.run(() => Promise.resolve("IR8"), "IR8", undefined, {
      shape: "ir/4",
      exceptionShape: "ir",
      fence,
    });
    await clock.advance(0);
    expect(await answered).toBe("IR8");
    expect(queue.alignment.aligned).toBe(true);
    refuse = true;
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "IR16", undefined, {
        shape: "ir/8",
        exceptionShape: "ir",
        fence,
      })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    await clock.advance(0); // the fence in the pause gets exception 11: maybe HR0's late answer
    expect(fenced).toEqual(["answered", "refused"]);
    expect(queue.alignment.aligned).toBe(false);
  });

  it("sends the fence in the pause after a timeout: the next scan's request goes at once, no fence of its own (issue 12)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => Promise.resolve([]));
    // The live unit answered: the fence reads like its read.
    await queue.run(() => Promise.resolve("live"), "HR0 at the live unit", undefined, { shape: "hr/2", fence });
    const start = clock.now();
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR0 at the dead unit", undefined, { shape: "hr/2", fence })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    await clock.advance(0);
    expect(queue.alignment.aligned).toBe(true);
    await clock.advance(200);
    const next = queue.run(() => (started.push(["HR0", clock.now()]), Promise.resolve("HR0")), "HR0", undefined, {
      shape: "hr/2",
      fence,
    });
    await clock.advance(0);
    expect(await next).toBe("HR0");
    expect(started).toEqual([
      ["fence hr/4", start + 100],
      ["HR0", start + 300],
    ]);
  });

  it("sibling: a fence sent in the pause that gets no answer is not sent again while nothing waits (no loop on a dead peer)", async () => {
    const clock = new SimulatedClock();
    const timeouts: unknown[] = [];
    const queue = new ModbusRequestQueue({
      clock,
      timeoutMs: 100,
      lateAnswerGuardMs: 100,
      onFenceTimeout: (error) => timeouts.push(error),
    });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => new Promise<never>(() => undefined));
    await queue.run(() => Promise.resolve("answered"), "HR10", undefined, { shape: "hr/2", fence });
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR0", undefined, { shape: "hr/2", fence })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    await clock.advance(2_000);
    expect(started.map(([name]) => name)).toEqual(["fence hr/4"]);
    expect(timeouts).toHaveLength(1);
    expect(queue.alignment.aligned).toBe(false);
  });

  it("a fence that gets no answer fails the request it went before without sending it (details.sent false)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => new Promise<never>(() => undefined));
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, { shape: "hr/2", fence })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    const write = queue
      .run(() => (started.push(["write", clock.now()]), Promise.resolve("ok")), "write", undefined, {
        shape: "fc6/5/1",
        fence,
      })
      .catch((caught: unknown) => caught);
    await clock.advance(200); // a fence waits up to the late bound
    expect(await write).toMatchObject({ code: "KILN_TIMEOUT", details: { sent: false } });
    expect(started.map(([name]) => name)).toEqual(["fence hr/4"]);
    // The next request sends another fence, of a shape the first fence's late answer cannot have.
    const next = queue
      .run(() => Promise.resolve("x"), "next", undefined, { shape: "hr/2", fence })
      .catch((caught: unknown) => caught);
    await clock.advance(0);
    expect(started.map(([name]) => name)).toEqual(["fence hr/4", "fence hr/6"]);
    await clock.advance(300);
    expect(await next).toMatchObject({ details: { sent: false } });
  });

  it("an answer nobody waited for (a duplicate) makes the next request wait for a fence (adv12s F3)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () => Promise.resolve([]));
    await queue.run(() => Promise.resolve("a"), "HR0", undefined, { shape: "hr/2", fence });
    queue.unasked("a second answer to HR0");
    expect(queue.alignment).toMatchObject({ aligned: false, anomalies: 1 });
    const next = queue.run(() => (started.push(["HR0", clock.now()]), Promise.resolve("b")), "HR0", undefined, {
      shape: "hr/2",
      fence,
    });
    await clock.advance(0);
    await next;
    expect(started.map(([name]) => name)).toEqual(["fence hr/4", "HR0"]);
  });

  it("a request failed as not connected before it was sent is not counted as an answer on its way", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = fences(clock, started, () =>
      Promise.reject(new KilnError("KILN_CONNECTION_FAILED", "down", { details: { modbus: "disconnected" } })),
    );
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, { shape: "hr/2", fence })
      .catch(() => undefined);
    await clock.advance(100);
    await silent;
    // While the connection is down, every read's fence fails as not connected: its shape is not used up.
    for (let attempt = 0; attempt < 4; attempt++) {
      const failed = await queue
        .run(() => Promise.resolve("x"), "read", undefined, { shape: "hr/2", fence })
        .catch((caught: unknown) => caught);
      expect(modbusFailureOf(failed)).toBe("disconnected");
    }
    expect(started.map(([name]) => name)).toEqual(Array(4).fill("fence hr/4"));
  });

  it("after a timeout keeps the line quiet only for requests the late answer could pass for", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const run = (name: string, shape: string | undefined) =>
      queue.run(
        () => (started.push([name, clock.now()]), Promise.resolve(name)),
        name,
        undefined,
        shape === undefined ? {} : { shape },
      );
    // Its outcome is taken at once: the timeout rejects it while the clock advances.
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "probe", undefined, { shape: "3/hr/2" })
      .then(
        () => "answered",
        (error: unknown) => (error as { code?: string }).code,
      );
    const other = run("unit 1", "1/hr/2");
    const same = run("unit 3 again", "3/hr/2");
    const unshaped = run("a write", undefined);
    const start = clock.now();
    await clock.advance(100);
    expect(await silent).toBe("KILN_TIMEOUT");
    await other;
    expect(started).toEqual([["unit 1", start + 100]]); // another shape: at once
    await clock.advance(100);
    await Promise.all([same, unshaped]);
    expect(started.slice(1)).toEqual([
      ["unit 3 again", start + 200],
      ["a write", start + 200],
    ]);
  });

  it("keeps two requests of one shape off the wire together until the device has proved its ids", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000, maxInFlight: 4 });
    const started: string[] = [];
    const run = (name: string, shape: string, answer: Promise<string>) =>
      queue.run(() => (started.push(name), answer), name, undefined, { shape });
    const a = deferred<string>();
    const first = [run("a", "1/hr/2", a.promise), run("b", "1/hr/2", Promise.resolve("b"))];
    await clock.advance(0);
    expect(started).toEqual(["a"]); // b looks like a: it waits
    a.resolve("a");
    await Promise.all(first);
    expect(started).toEqual(["a", "b"]);
    // Distinguishable requests go together; each answered while a later one of another shape is out proves ids.
    for (let round = 0; round < 3; round++) {
      const x = deferred<string>();
      const y = deferred<string>();
      const pair = [run("x", "1/hr/2", x.promise), run("y", "1/hr/4", y.promise)];
      await clock.advance(0);
      x.resolve("x");
      await pair[0];
      y.resolve("y");
      await pair[1];
    }
    expect(queue.idsProven).toBe(true);
    started.length = 0;
    const c = deferred<string>();
    const both = [run("c", "1/hr/2", c.promise), run("d", "1/hr/2", Promise.resolve("d"))];
    await clock.advance(0);
    expect(started).toEqual(["c", "d"]);
    c.resolve("c");
    await Promise.all(both);
  });

  it("sends a background request (a probe) only after every other request queued, even those queued later", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const started: string[] = [];
    const first = deferred<string>();
    const runs = [
      queue.run(() => (started.push("live 1"), first.promise), "live 1"),
      queue.run(() => (started.push("probe"), Promise.resolve("p")), "probe", undefined, { background: true }),
      queue.run(() => (started.push("live 2"), Promise.resolve("2")), "live 2"),
    ];
    await clock.advance(0);
    first.resolve("1");
    await Promise.all(runs);
    expect(started).toEqual(["live 1", "live 2", "probe"]);
  });

  it("keeps up to maxInFlight requests on the wire, each with its own timeout, and fails them all at once", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000, maxInFlight: 2 });
    const started: string[] = [];
    const answers = [deferred<string>(), deferred<string>(), deferred<string>(), deferred<string>()];
    const runs = ["a", "b", "c", "d"].map((name, index) =>
      queue.run(() => (started.push(name), answers[index]!.promise), name),
    );
    await clock.advance(0);
    expect(started).toEqual(["a", "b"]);
    answers[1]!.resolve("B");
    await expect(runs[1]).resolves.toBe("B");
    await clock.advance(0);
    expect(started).toEqual(["a", "b", "c"]);
    const [aFailed, cFailed, dFailed] = [rejection(runs[0]!), rejection(runs[2]!), rejection(runs[3]!)];
    await clock.advance(1000);
    expect(modbusFailureOf(await aFailed)).toBe("timeout");
    expect(modbusFailureOf(await cFailed)).toBe("timeout");
    await clock.advance(0);
    expect(started).toEqual(["a", "b", "c", "d"]);
    queue.fail(new KilnError("KILN_NOT_CONNECTED", "closed"));
    expect(KilnError.is(await dFailed, "KILN_NOT_CONNECTED")).toBe(true);
    expect(queue.size).toBe(0);
  });

  it("runs one request at a time, in order", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const started: string[] = [];
    const first = deferred<string>();
    const second = deferred<string>();
    const a = queue.run(() => (started.push("a"), first.promise), "a");
    const b = queue.run(() => (started.push("b"), second.promise), "b");
    await clock.advance(0);
    expect(started).toEqual(["a"]);
    expect(queue.size).toBe(2);
    first.resolve("A");
    await expect(a).resolves.toBe("A");
    await clock.advance(0);
    expect(started).toEqual(["a", "b"]);
    second.resolve("B");
    await expect(b).resolves.toBe("B");
    expect(queue.size).toBe(0);
  });

  it("times a silent request out with KILN_TIMEOUT and moves on", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 500 });
    const silent = queue.run(() => new Promise<never>(() => undefined), "silent");
    const next = queue.run(() => Promise.resolve(7), "next");
    const outcome = rejection(silent);
    await clock.advance(499);
    expect(queue.size).toBe(2);
    await clock.advance(1);
    const error = await outcome;
    expect(KilnError.is(error, "KILN_TIMEOUT")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    expect(modbusFailureOf(error)).toBe("timeout");
    await expect(next).resolves.toBe(7);
  });

  it("leaves the inter-request delay between the end of one request and the start of the next", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000, interRequestDelayMs: 50 });
    const starts: number[] = [];
    const first = deferred<void>();
    const a = queue.run(() => (starts.push(clock.now()), first.promise), "a");
    const b = queue.run(() => (starts.push(clock.now()), Promise.resolve()), "b");
    await clock.advance(20);
    first.resolve();
    await a;
    await clock.advance(49);
    expect(starts).toHaveLength(1);
    await clock.advance(1);
    await b;
    expect(starts[1]! - starts[0]!).toBe(70);
  });

  it("drops a queued request whose signal aborts, without running it", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const first = deferred<void>();
    let ran = false;
    const a = queue.run(() => first.promise, "a");
    const controller = new AbortController();
    const b = queue.run(
      () => {
        ran = true;
        return Promise.resolve();
      },
      "b",
      controller.signal,
    );
    controller.abort();
    expect(KilnError.is(await rejection(b), "KILN_ABORTED")).toBe(true);
    first.resolve();
    await a;
    await clock.advance(0);
    expect(ran).toBe(false);
    await expect(queue.run(() => Promise.resolve(1), "c", controller.signal)).rejects.toMatchObject({
      code: "KILN_ABORTED",
    });
  });

  it("lets a request on the wire whose signal aborts settle with its answer, keeping the line until then", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const wire = deferred<string>();
    const controller = new AbortController();
    let settled = false;
    const a = queue.run(() => wire.promise, "a", controller.signal);
    void a.then(() => (settled = true));
    let bStarted = false;
    const b = queue.run(() => ((bStarted = true), Promise.resolve()), "b");
    await clock.advance(0);
    controller.abort();
    await clock.advance(0);
    // Its outcome is what the driver counts in the unit's health: the abort does not replace it.
    expect(settled).toBe(false);
    expect(bStarted).toBe(false);
    wire.resolve("answer");
    expect(await a).toBe("answer");
    await b;
    expect(bStarted).toBe(true);
  });

  it("times out a request on the wire whose signal aborted, with KILN_TIMEOUT", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const controller = new AbortController();
    const a = rejection(queue.run(() => new Promise<never>(() => undefined), "a", controller.signal));
    await clock.advance(100);
    controller.abort();
    await clock.advance(1000);
    expect(KilnError.is(await a, "KILN_TIMEOUT")).toBe(true);
  });

  it("fail() rejects the request in flight and every queued one, and frees the line", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const lost = new KilnError("KILN_CONNECTION_FAILED", "lost", { retryable: true });
    const a = rejection(queue.run(() => new Promise<never>(() => undefined), "a"));
    const b = rejection(queue.run(() => Promise.resolve(), "b"));
    await clock.advance(0);
    queue.fail(lost);
    expect(await a).toBe(lost);
    expect(await b).toBe(lost);
    expect(queue.size).toBe(0);
    await expect(queue.run(() => Promise.resolve("again"), "c")).resolves.toBe("again");
  });

  it("turns an operation that throws synchronously into a rejection", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 1000 });
    const boom = new Error("boom");
    await expect(
      queue.run(() => {
        throw boom;
      }, "a"),
    ).rejects.toBe(boom);
    await expect(queue.run(() => Promise.resolve(2), "b")).resolves.toBe(2);
  });

  it("an exception answer while an earlier request of its function, answered early by a mismatch, may still get its own is not trusted (sibling of adv12q F1)", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const mismatch = new KilnError("KILN_DEVICE_ERROR", "answer does not fit", { details: {} });
    await queue
      .run(() => Promise.reject(mismatch), "HR0", undefined, { shape: "hr/2", exceptionShape: "hr" })
      .catch(() => undefined);
    await clock.advance(150); // past the old quiet time (mismatch + guard), within the late bound (send + 200)
    const refusal = new KilnError("KILN_DEVICE_ERROR", "exception 2", { details: { modbus: 2 } });
    const refuse = async () => {
      const outcome = queue
        .run(() => Promise.reject(refusal), "HR50", undefined, { shape: "hr/4", exceptionShape: "hr" })
        .catch((caught: unknown) => caught);
      await clock.advance(0);
      return outcome;
    };
    expect(await refuse()).toMatchObject({ code: "KILN_DEVICE_ERROR", details: { unprovenException: 2 } });
    // Past the late bounds (HR0's, and HR50's own, whose untrusted refusal holds its shape like a mismatch):
    // a refusal is the request's own again.
    const later = refuse();
    await clock.advance(200);
    const trusted = await later;
    expect(modbusFailureOf(trusted)).toBe(2);
  });
});
