import { describe, expect, expectTypeOf, test } from "vitest";
import type { KilnEvents } from "./catalogue";
import { EventBus } from "./event-bus";

const overrun = { at: 1, group: "fast", missedCycles: 2, durationMs: 120 };

describe("EventBus", () => {
  test("delivers typed payloads to subscribers and stops after dispose", async () => {
    const bus = new EventBus<KilnEvents>();
    const seen: number[] = [];
    const dispose = bus.on("scan-overrun", (event) => {
      expectTypeOf(event.missedCycles).toEqualTypeOf<number>();
      seen.push(event.missedCycles);
    });
    await bus.publish("scan-overrun", overrun);
    dispose();
    dispose();
    await bus.publish("scan-overrun", overrun);
    expect(seen).toEqual([2]);
    expect(bus.listenerCount("scan-overrun")).toBe(0);
  });

  test("awaits async handlers before publish resolves", async () => {
    const bus = new EventBus<KilnEvents>();
    let finished = false;
    bus.on("scan-overrun", async () => {
      await new Promise((resolve) => setImmediate(resolve));
      finished = true;
    });
    await bus.publish("scan-overrun", overrun);
    expect(finished).toBe(true);
  });

  test("isolates a failing handler: others run, publisher does not see it, handler-error is published", async () => {
    const reported: unknown[] = [];
    const bus = new EventBus<KilnEvents>({ onHandlerError: (_type, error) => reported.push(error), now: () => 42 });
    const seen: string[] = [];
    const errors: KilnEvents["handler-error"][] = [];
    bus.on("handler-error", (event) => void errors.push(event));
    bus.on("scan-overrun", () => {
      throw new Error("sync boom");
    });
    bus.on("scan-overrun", () => Promise.reject(new Error("async boom")));
    bus.on("scan-overrun", () => void seen.push("third"));
    await expect(bus.publish("scan-overrun", overrun)).resolves.toBeUndefined();
    expect(seen).toEqual(["third"]);
    expect(errors.map((event) => (event.error as Error).message)).toEqual(["sync boom", "async boom"]);
    expect(errors[0]).toMatchObject({ eventType: "scan-overrun", at: 42 });
    expect(reported).toHaveLength(2);
  });

  test("a failing handler-error handler does not recurse", async () => {
    const bus = new EventBus<KilnEvents>();
    let calls = 0;
    bus.on("handler-error", () => {
      calls++;
      throw new Error("reporter broken");
    });
    bus.on("scan-overrun", () => {
      throw new Error("boom");
    });
    await bus.publish("scan-overrun", overrun);
    expect(calls).toBe(1);
  });

  test("taps see every event after its handlers", async () => {
    const bus = new EventBus<KilnEvents>();
    const order: string[] = [];
    bus.on("scan-overrun", () => void order.push("handler"));
    bus.tap((type) => void order.push(`tap:${type}`));
    await bus.publish("scan-overrun", overrun);
    expect(order).toEqual(["handler", "tap:scan-overrun"]);
  });

  test("next() resolves with the first matching event", async () => {
    const bus = new EventBus<KilnEvents>();
    const waiting = bus.next("scan-overrun", (event) => event.missedCycles > 5);
    await bus.publish("scan-overrun", overrun);
    await bus.publish("scan-overrun", { ...overrun, missedCycles: 7 });
    await expect(waiting).resolves.toMatchObject({ missedCycles: 7 });
    expect(bus.listenerCount("scan-overrun")).toBe(0);
  });

  test("once() fires a single time", async () => {
    const bus = new EventBus<KilnEvents>();
    let count = 0;
    bus.once("scan-overrun", () => void count++);
    await bus.publish("scan-overrun", overrun);
    await bus.publish("scan-overrun", overrun);
    expect(count).toBe(1);
  });
});

describe("EventBus nesting", () => {
  test("an async handler of a nested publish is awaited by the inner publish, not the outer one", async () => {
    const bus = new EventBus<KilnEvents>();
    const order: string[] = [];
    bus.on("scan-overrun", async () => {
      await bus.publish("samples-drop", { at: 1, count: 1, reason: "nested" });
      order.push("outer handler done");
    });
    bus.on("samples-drop", async () => {
      await new Promise((resolve) => setImmediate(resolve));
      order.push("inner handler done");
    });
    await bus.publish("scan-overrun", overrun);
    expect(order).toEqual(["inner handler done", "outer handler done"]);
  });

  test("subscribing during a publish does not affect that publish", async () => {
    const bus = new EventBus<KilnEvents>();
    let late = 0;
    bus.on("scan-overrun", () => void bus.on("scan-overrun", () => void late++));
    await bus.publish("scan-overrun", overrun);
    expect(late).toBe(0);
    await bus.publish("scan-overrun", overrun);
    expect(late).toBe(1);
  });
});

describe("eventBusViewOf copies (review 15r)", () => {
  test("a \"__proto__\" key in an event's data reaches a view handler as data, not as the copy's prototype", async () => {
    const { eventBusViewOf } = await import("./event-bus");
    const bus = new EventBus<{ thing: { data: Record<string, unknown> } }>();
    const seen: Record<string, unknown>[] = [];
    eventBusViewOf(bus).on("thing", (event) => void seen.push(event.data));
    await bus.publish("thing", { data: JSON.parse('{"__proto__": {"x": 1}, "y": 2}') as Record<string, unknown> });
    expect(Object.keys(seen[0]!)).toEqual(["__proto__", "y"]);
    expect(Object.getPrototypeOf(seen[0]!)).toBe(Object.prototype);
  });
});
