import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";

// A peer that accepts TCP connections and closes them (at once, or after one answer) is redialled on the growing
// reconnect backoff, not at its first step forever (adv12 M3: 34 connections in 11 s): an accepted socket proves
// nothing, and each loss within the window of the backoff's cap makes the next wait one step longer
// (ConnectionLifecycle.reconnect; docs/adr/0008, amendments fix13c, fix13f and fix13g).

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({ r: { dataType: "uint16", address: "HR0" } });
/** A cap (and so a window) long enough that the first six connections of each peer below fall in it. */
const BACKOFF = { initialDelayMs: 40, maxDelayMs: 2_000, multiplier: 2, jitter: 0 };

/** A peer that closes each connection per `mode`; returns the accept times (ms, performance.now()). */
async function flappingPeer(
  mode: "now" | "answer-once" | "answer-then-120ms",
): Promise<{ port: number; accepts: number[] }> {
  const accepts: number[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    accepts.push(performance.now());
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    if (mode === "now") {
      socket.destroy();
      return;
    }
    if (mode === "answer-then-120ms") {
      // Answers every read, and closes 120 ms after the first: longer than one step (40 ms), shorter than the cap.
      let closing = false;
      socket.on("data", (frame) => {
        socket.write(answerTo(frame));
        if (!closing) setTimeout(() => socket.destroy(), 120);
        closing = true;
      });
      return;
    }
    socket.once("data", (frame) => {
      // A good FC 3 answer, then close soon after.
      socket.write(answerTo(frame));
      setTimeout(() => socket.destroy(), 10);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as { port: number }).port, accepts };
}

/** A good FC 3 answer to `frame` of its `quantity` zero registers. */
function answerTo(frame: Buffer): Buffer {
  const quantity = frame.readUInt16BE(10);
  const answer = Buffer.alloc(9 + 2 * quantity);
  frame.copy(answer, 0, 0, 2);
  answer.writeUInt16BE(3 + 2 * quantity, 4);
  answer[6] = frame[6]!;
  answer[7] = 3;
  answer[8] = 2 * quantity;
  return answer;
}

async function dial(port: number, reading: boolean): Promise<ModbusDriver> {
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port },
    requestTimeoutMs: 200,
    reconnect: { enabled: true, ...BACKOFF },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  if (reading) {
    let stopped = false;
    cleanups.push(() => {
      stopped = true;
    });
    void (async () => {
      while (!stopped) {
        if (driver.status === "connected") await driver.read(tags.list()).catch(() => undefined);
        else await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
  }
  return driver;
}

async function untilAccepts(accepts: number[], count: number): Promise<number[]> {
  while (accepts.length < count) await new Promise((resolve) => setTimeout(resolve, 5));
  return accepts.slice(1, count).map((at, index) => at - accepts[index]!);
}

/** Each gap at least its backoff step (less a little timer slack) after `upMs`: 40, 80, 160, 320, 640. */
function expectBackingOff(gaps: number[], upMs = 0): void {
  const steps = gaps.map((_, index) => Math.min(BACKOFF.maxDelayMs, BACKOFF.initialDelayMs * 2 ** index));
  expect(gaps.map((gap, index) => gap >= upMs + steps[index]! - 5)).toEqual(gaps.map(() => true));
}

describe("a peer that accepts connections and closes them", () => {
  it("closing at once: each redial waits one backoff step longer per loss in the window", async () => {
    const { port, accepts } = await flappingPeer("now");
    await dial(port, false);
    expectBackingOff(await untilAccepts(accepts, 6));
  });

  it("answering one read and then closing (up less than one step): backs off the same way", async () => {
    const { port, accepts } = await flappingPeer("answer-once");
    await dial(port, true);
    expectBackingOff(await untilAccepts(accepts, 6));
  });

  it("answering reads for 120 ms and then closing (up longer than one step, shorter than the cap): backs off too (issue 13 MEDIUM-2)", async () => {
    const { port, accepts } = await flappingPeer("answer-then-120ms");
    await dial(port, true);
    // Before: one step (40 ms) of life proved each connection, so it was redialled every ~160 ms forever.
    expectBackingOff(await untilAccepts(accepts, 6), 120);
  });
});
