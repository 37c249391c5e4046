import { describe, expect, test } from "vitest";
import { HostInbox, type InboxMessage } from "./host-inbox";

/** An inbox on a hand-driven clock and turn queue: each message taken costs `cost` ms. */
function rig({ cost = 1, maxWaiting = 8, maxWaitingBytes = 1_000_000 } = {}) {
  let now = 0;
  const holds: string[] = [];
  const turns: (() => void)[] = [];
  const taken: string[] = [];
  const writer = { congested: false, relieve: undefined as (() => void) | undefined };
  const inbox = new HostInbox({
    take: (message) => {
      taken.push(message.topic);
      now += cost;
    },
    congested: () => writer.congested,
    whenRelieved: () => new Promise<void>((resolve) => (writer.relieve = resolve)),
    sliceMs: 5,
    maxWaiting,
    maxWaitingBytes,
    now: () => now,
    later: (turn) => turns.push(turn),
    onHold: () => holds.push(`hold at ${taken.length}`),
    onRelease: () => holds.push(`caught up at ${taken.length}`),
  });
  const message = (topic: string, bytes = 10): InboxMessage => ({
    topic,
    payload: new Uint8Array(bytes),
    retained: false,
  });
  const nextTurn = (): void => turns.shift()!();
  return { inbox, taken, turns, writer, message, nextTurn, holds };
}

describe("HostInbox: the host's messages in order, a slice of work per turn, bounded (ADR 0030, 19i)", () => {
  test("messages are taken at once until the slice is used, then on later turns, in the order received", () => {
    const { inbox, taken, turns, message, nextTurn } = rig();
    const released: number[] = [];
    for (let index = 0; index < 7; index++) {
      inbox.receive(message(`m${index}`));
      inbox.ready(() => released.push(index));
    }
    // 5 ms of 1 ms messages taken at once; the rest waits for the next turn.
    expect(taken).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(inbox.waiting).toBe(2);
    expect(released).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(turns).toHaveLength(1);
    nextTurn();
    expect(taken).toEqual(["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
    expect(inbox.waiting).toBe(0);
    // A message in the new slice, behind nothing, is taken at once.
    inbox.receive(message("m7"));
    expect(taken.at(-1)).toBe("m7");
  });

  test("past maxWaiting MQTT.js is held (reads nothing more) until the queue is down to half; nothing is dropped or reordered", () => {
    const { inbox, taken, message, nextTurn } = rig({ cost: 10, maxWaiting: 4 });
    let count = 0;
    // MQTT.js hands one message, then waits for its callback before the next.
    const deliver = (): void => {
      const index = count++;
      if (index >= 12) return;
      inbox.receive(message(`m${index}`));
      inbox.ready(deliver);
    };
    deliver();
    // m0 taken (10 ms: the slice is used); m1..m4 wait; at 4 waiting MQTT.js is held.
    expect(taken).toEqual(["m0"]);
    expect(inbox.waiting).toBe(4);
    expect(count).toBe(5);
    nextTurn(); // m1 taken (one message per 5 ms slice at 10 ms each): 3 waiting, over half: still held
    expect(inbox.waiting).toBe(3);
    expect(count).toBe(5);
    nextTurn(); // m2: 2 waiting, half: released, MQTT.js hands m5
    expect(count).toBeGreaterThan(5);
    while (inbox.waiting > 0) nextTurn();
    expect(taken).toEqual(Array.from({ length: 12 }, (_, index) => `m${index}`));
  });

  test("past maxWaitingBytes MQTT.js is held too; flush takes everything in order", async () => {
    const { inbox, taken, message, nextTurn, turns } = rig({ cost: 10, maxWaitingBytes: 100 });
    const released: string[] = [];
    inbox.receive(message("big0", 60));
    inbox.ready(() => released.push("big0"));
    expect(taken).toEqual(["big0"]);
    expect(released).toEqual(["big0"]);
    inbox.receive(message("big1", 60));
    inbox.ready(() => released.push("big1"));
    inbox.receive(message("big2", 60));
    inbox.ready(() => released.push("big2"));
    // 120 bytes waiting: over the bound, MQTT.js is held.
    expect(inbox.waitingBytes).toBe(120);
    expect(released).toEqual(["big0", "big1"]);
    const flushed = inbox.flush();
    // One 10 ms message per slice: the flush yields between them.
    expect(taken).toEqual(["big0", "big1"]);
    while (turns.length > 0) nextTurn();
    await flushed;
    expect(taken).toEqual(["big0", "big1", "big2"]);
    expect(inbox.waitingBytes).toBe(0);
    expect(released).toEqual(["big0", "big1", "big2"]);
  });

  test("while the writer is congested no message is taken and MQTT.js is held; once relieved, everything is taken in order", async () => {
    const { inbox, taken, writer, message, nextTurn, turns } = rig();
    const released: string[] = [];
    writer.congested = true;
    inbox.receive(message("a"));
    inbox.ready(() => released.push("a"));
    expect(taken).toEqual([]);
    expect(released).toEqual([]);
    while (turns.length > 0) nextTurn();
    expect(taken).toEqual([]);
    writer.congested = false;
    writer.relieve!();
    await Promise.resolve();
    nextTurn();
    expect(taken).toEqual(["a"]);
    expect(released).toEqual(["a"]);
    inbox.receive(message("b"));
    // Taken at once (the writer no longer congested), but it congests it again: "c" waits.
    writer.congested = true;
    inbox.receive(message("c"));
    expect(taken).toEqual(["a", "b"]);
    writer.congested = false;
    writer.relieve!();
    await Promise.resolve();
    while (turns.length > 0) nextTurn();
    expect(taken).toEqual(["a", "b", "c"]);
  });

  test("flush takes what waits in slices of sliceMs, a turn apart, in order, and resolves once all of it is taken (review adv19k M1)", async () => {
    const { inbox, taken, writer, message, turns } = rig({ maxWaiting: 1_000 });
    // The writer congested: nothing is taken by the ordinary turns; 20 messages wait.
    writer.congested = true;
    for (let index = 0; index < 20; index++) inbox.receive(message(`m${index}`));
    turns.splice(0);
    let done = false;
    const flushed = inbox.flush().then(() => (done = true));
    // 5 ms of 1 ms messages in the first slice, not all 20 ms at once.
    expect(taken).toHaveLength(5);
    // A message received during the flush comes after what the flush takes.
    inbox.receive(message("late"));
    let slices = 1;
    while (turns.length > 0 && !done) {
      turns.shift()!();
      slices++;
      await Promise.resolve();
    }
    await flushed;
    expect(slices).toBe(4);
    expect(taken).toEqual(Array.from({ length: 20 }, (_unused, index) => `m${index}`));
    expect(inbox.waiting).toBe(1);
  });

  test("a second flush while one runs joins it; each resolves once what waited at its call is taken", async () => {
    const { inbox, taken, writer, message, turns } = rig({ maxWaiting: 1_000 });
    writer.congested = true;
    for (let index = 0; index < 8; index++) inbox.receive(message(`a${index}`));
    turns.splice(0);
    const order: string[] = [];
    const first = inbox.flush().then(() => order.push("first"));
    for (let index = 0; index < 4; index++) inbox.receive(message(`b${index}`));
    const second = inbox.flush().then(() => order.push("second"));
    expect(taken).toHaveLength(5);
    while (turns.length > 0) turns.shift()!();
    await Promise.all([first, second]);
    expect(order).toEqual(["first", "second"]);
    expect(taken).toEqual([...Array.from({ length: 8 }, (_unused, index) => `a${index}`), "b0", "b1", "b2", "b3"]);
    expect(inbox.waiting).toBe(0);
    // Nothing waiting: resolves at once.
    await inbox.flush();
  });

  test("a hold is reported when MQTT.js is first held, and its end once MQTT.js reads on and everything that waited is taken (ADR 0043, fix19o)", async () => {
    const { inbox, message, nextTurn, writer, holds, turns } = rig({ cost: 1, maxWaiting: 4 });
    writer.congested = true;
    for (let index = 0; index < 3; index++) {
      inbox.receive(message(`m${index}`));
      inbox.ready(() => undefined);
    }
    // Held from the first callback on, reported once.
    expect(holds).toEqual(["hold at 0"]);
    writer.congested = false;
    writer.relieve!();
    await Promise.resolve();
    while (turns.length > 0) nextTurn();
    expect(inbox.waiting).toBe(0);
    expect(holds).toEqual(["hold at 0", "caught up at 3"]);
    // Read on without a hold: nothing reported.
    inbox.receive(message("m3"));
    inbox.ready(() => undefined);
    while (turns.length > 0) nextTurn();
    expect(holds).toHaveLength(2);
  });
});
