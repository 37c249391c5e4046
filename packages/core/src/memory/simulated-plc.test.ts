import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { SimulatedPlc } from "./simulated-plc";
import { SimulatedClock } from "./simulated-clock";

const tags = defineTags({
  counter: { dataType: "uint32" },
  ramp: { dataType: "float64" },
  valve: { dataType: "bool", access: "readwrite" },
  derived: { dataType: "float64" },
});

function setup() {
  const clock = new SimulatedClock({ start: 0 });
  const plc = new SimulatedPlc({
    tags,
    clock,
    sources: {
      counter: { kind: "counter" },
      ramp: { kind: "ramp", from: 0, to: 100, periodMs: 1_000 },
      derived: (_now, self) => (self.peek("valve") ? 5 : 1),
    },
  });
  return { clock, plc };
}

describe("SimulatedPlc", () => {
  test("signals follow the clock; counters advance per read; sources can depend on other tags", async () => {
    const { clock, plc } = setup();
    await plc.connect();
    const list = [tags.get("counter"), tags.get("ramp"), tags.get("derived")];
    const first = await plc.read(list);
    await clock.advance(250);
    await plc.write(tags.get("valve"), true);
    const second = await plc.read(list);
    expect(first.map((s) => s.value)).toEqual([0, 0, 1]);
    expect(second.map((s) => s.value)).toEqual([1, 25, 5]);
    expect(second[0]?.timestamp).toBe(250);
    expect(plc.writes).toEqual([{ tag: "valve", value: true, at: 250 }]);
    expect(plc.readCalls).toBe(2);
  });

  test("unreachable: connect fails retryably, an open connection drops", async () => {
    const { plc } = setup();
    await plc.connect();
    plc.faults.unreachable = true;
    await expect(plc.read([tags.get("ramp")])).rejects.toMatchObject({ code: "KILN_NOT_CONNECTED", retryable: true });
    expect(plc.status).toBe("disconnected");
    await expect(plc.connect()).rejects.toMatchObject({ code: "KILN_CONNECTION_FAILED", retryable: true });
    plc.faults.unreachable = false;
    await plc.connect();
    expect(plc.status).toBe("connected");
  });

  test("hang: a call waits until its signal aborts", async () => {
    const { plc } = setup();
    await plc.connect();
    plc.faults.hang = true;
    const controller = new AbortController();
    const reading = plc.read([tags.get("ramp")], controller.signal);
    controller.abort(new KilnError("KILN_TIMEOUT", "timed out", { retryable: true }));
    await expect(reading).rejects.toMatchObject({ code: "KILN_TIMEOUT" });
  });

  test("latency is spent on the PLC's clock", async () => {
    const { clock, plc } = setup();
    await plc.connect();
    plc.faults.latencyMs = 100;
    let done = false;
    const reading = plc.read([tags.get("ramp")]).then(() => (done = true));
    await clock.advance(99);
    expect(done).toBe(false);
    await clock.advance(1);
    await reading;
    expect(done).toBe(true);
  });

  test("injected bad quality affects only the chosen tag", async () => {
    const { plc } = setup();
    await plc.connect();
    plc.faults.badQuality.add("ramp");
    const [counter, ramp] = await plc.read([tags.get("counter"), tags.get("ramp")]);
    expect(counter?.quality.severity).toBe("good");
    expect(ramp?.quality.severity).toBe("bad");
  });

  test("subscriptions deliver only changes on the sampling interval", async () => {
    const { clock, plc } = setup();
    await plc.connect();
    const batches: string[][] = [];
    const dispose = await plc.subscribe(
      [tags.get("valve"), tags.get("derived")],
      { samplingIntervalMs: 100 },
      (samples) => batches.push(samples.map((s) => `${s.tag}=${String(s.value)}`)),
    );
    await clock.advance(0);
    await clock.advance(100);
    await plc.write(tags.get("valve"), true);
    await clock.advance(100);
    dispose();
    await plc.write(tags.get("valve"), false);
    await clock.advance(300);
    expect(batches).toEqual([
      ["valve=false", "derived=1"],
      ["valve=true", "derived=5"],
    ]);
  });

  test("a source for an unknown tag is a configuration error", () => {
    expect(() => new SimulatedPlc({ tags, sources: { nope: { kind: "counter" } } })).toThrow(
      expect.objectContaining({ code: "KILN_TAG_UNKNOWN" }),
    );
  });
});
