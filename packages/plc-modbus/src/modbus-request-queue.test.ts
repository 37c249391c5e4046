import { describe, expect, it } from "vitest";
import { KilnError } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import { modbusFailureOf } from "./modbus-failure";
import { ModbusRequestQueue } from "./modbus-request-queue";

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

describe("ModbusRequestQueue", () => {
  it("after a timeout sends a fence before the next same-shape request, unless another shape was answered since", async () => {
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: string[] = [];
    const fence = () => (started.push("fence"), Promise.reject(new Error("late answer does not fit")));
    const run = (name: string, shape: string) =>
      queue.run(() => (started.push(name), Promise.resolve(name)), name, undefined, {
        shape,
        fence,
        fenceShape: "1/hr/1",
      });
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, {
        shape: "1/hr/2",
        fence,
        fenceShape: "1/hr/1",
      })
      .catch(() => "timed out");
    await clock.advance(100);
    expect(await silent).toBe("timed out");
    const same = run("HR0", "1/hr/2");
    await clock.advance(100);
    expect(await same).toBe("HR0");
    // The fence went first (its refusal ignored), the request after it; once only.
    expect(started).toEqual(["fence", "HR0"]);
    const again = run("HR0 again", "1/hr/2");
    await clock.advance(0);
    await again;
    expect(started).toEqual(["fence", "HR0", "HR0 again"]);

    // Sibling: a request of another shape answered after the timeout took any held answer: no fence.
    const silent2 = queue
      .run(() => new Promise<string>(() => undefined), "HR100", undefined, {
        shape: "1/hr/2",
        fence,
        fenceShape: "1/hr/1",
      })
      .catch(() => "timed out");
    await clock.advance(100);
    await silent2;
    const other = run("IR0", "1/ir/2");
    const same2 = run("HR0 third", "1/hr/2");
    await clock.advance(100);
    await Promise.all([other, same2]);
    expect(started.slice(3)).toEqual(["IR0", "HR0 third"]);
  });

  it("an answer that did not fit (a mismatch, a desync) guards its shape like a timeout; an exception does not", async () => {
    // Pipelined behind a serial gateway, a request failed as a mismatch may still get its own answer later,
    // stamped with a later request's id (adv12e: seen once as HR0's value in HR50's tag).
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = () => (started.push(["fence", clock.now()]), Promise.resolve([]));
    const fail = (name: string, shape: string, error: unknown) =>
      queue.run(() => Promise.reject(error), name, undefined, { shape, fence }).catch(() => name);
    const run = (name: string, shape: string) =>
      queue.run(() => (started.push([name, clock.now()]), Promise.resolve(name)), name, undefined, { shape, fence });
    const start = clock.now();
    await fail("HR0", "1/hr/2", new KilnError("KILN_DEVICE_ERROR", "answer does not fit", { details: {} }));
    const next = run("HR50", "1/hr/2");
    await clock.advance(200);
    await next;
    // Its own answer may come until its send time plus the late bound (timeout + guard), however early the
    // answer that did not fit came (adv12q F1: a quiet time counted from the mismatch ended too soon).
    expect(started).toEqual([
      ["fence", start + 200],
      ["HR50", start + 200],
    ]);
    const exception = new KilnError("KILN_DEVICE_ERROR", "exception 2", { details: { modbus: 2 } });
    await fail("HR100", "1/hr/2", exception);
    const after = run("HR0 again", "1/hr/2");
    await clock.advance(0);
    await after;
    expect(started.at(-1)).toEqual(["HR0 again", start + 200]); // an exception is its own answer: at once
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

  it("a fence that gets no answer of its own holds reads of its shape until its answer can no longer come (sibling of adv12q F1)", async () => {
    // A fence is a read too: a gateway stamping the newest id may hand its late answer to a read of the fence's
    // size elsewhere (a one-register block after a two-register block's fence).
    const clock = new SimulatedClock();
    const queue = new ModbusRequestQueue({ clock, timeoutMs: 100, lateAnswerGuardMs: 100 });
    const started: [string, number][] = [];
    const fence = () => (started.push(["fence", clock.now()]), new Promise<never>(() => undefined));
    const silent = queue
      .run(() => new Promise<string>(() => undefined), "HR0-1", undefined, { shape: "hr/4", fence, fenceShape: "hr/2" })
      .catch(() => "timed out");
    const start = clock.now();
    await clock.advance(100);
    expect(await silent).toBe("timed out");
    const run = (name: string, shape: string) =>
      queue.run(() => (started.push([name, clock.now()]), Promise.resolve(name)), name, undefined, {
        shape,
        fence,
        fenceShape: "hr/2",
      });
    const again = run("HR0-1 again", "hr/4");
    await clock.advance(100); // the quiet of hr/4 ends; the fence goes out and times out after 100 ms
    await clock.advance(100);
    await again;
    const single = run("HR9", "hr/2"); // the fence's shape: waits until the fence's send time + 200 ms
    await clock.advance(100);
    await single;
    expect(started).toEqual([
      ["fence", start + 200],
      ["HR0-1 again", start + 300],
      ["HR9", start + 400],
    ]);
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
