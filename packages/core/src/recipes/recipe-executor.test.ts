import { afterEach, describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { disclosedRefusal, type Disclosure } from "../domain/refusal-disclosure";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import { CurrentValueTable } from "../cvt/current-value-table";
import type { KilnEvents } from "../events/catalogue";
import { EventBus, type Disposer } from "../events/event-bus";
import { kilnMachineModel } from "../fsm/kiln-machine-model";
import { packmlModel } from "../fsm/packml-model";
import { StateMachine } from "../fsm/state-machine";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { ProcessRecord, ProcessRepository } from "../ports/process-repository";
import { kilnMachineBinding, packmlMachineBinding, type MachineBinding } from "./machine-binding";
import { recoverInterrupted } from "./process-recovery";
import { RecipeExecutor, type RecipeExecutorOptions, type SafeStateWrite } from "./recipe-executor";
import { tableRecipeIo, type RecipeIo } from "./recipe-io";
import { storedRecipeOf, type RecipeInput } from "./recipe-schema";
import { recipeResolver } from "./recipe-validation";

const START = Date.UTC(2026, 0, 1);

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "valve.h2o": { dataType: "bool", access: "readwrite" },
  "valve.pump": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
  "mfc.flow": { dataType: "uint16", access: "readwrite", range: { min: 0, max: 1000 } },
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 } },
});

const SAFE_STATE: SafeStateWrite[] = [
  { tag: "valve.tma", value: false },
  { tag: "valve.h2o", value: false },
  { tag: "heater.setpoint", value: 0 },
];

/** The ALD cycle of the founding case: precursor pulse, purge, co-reactant pulse, purge. */
function aldRecipe(cycles: number): RecipeInput {
  return {
    name: "ald-al2o3",
    version: 1,
    parameters: {
      cycles: { type: "number", default: cycles, min: 1, max: 5000 },
      pulseMs: { type: "number", default: 20, min: 1, max: 500, unit: "ms" },
      purgeMs: { type: "number", default: 50, min: 1, max: 5000, unit: "ms" },
    },
    steps: [
      {
        loop: {
          count: { param: "cycles" },
          steps: [
            { pulse: { tag: "valve.tma", durationMs: { param: "pulseMs" } } },
            { wait: { durationMs: { param: "purgeMs" } } },
            { pulse: { tag: "valve.h2o", durationMs: { param: "pulseMs" } } },
            { wait: { durationMs: { param: "purgeMs" } } },
          ],
        },
      },
    ],
  };
}

interface Published {
  readonly type: string;
  readonly event: Record<string, unknown>;
}

/** I/O straight on the simulated PLC: reads peek at it, no background polling. */
function plcIo(plc: SimulatedPlc, clock: SimulatedClock): RecipeIo {
  return {
    write: (tag, value, signal) => plc.write(tags.get(tag), value, signal),
    current: (tag): Sample => ({ tag, value: plc.peek(tag), timestamp: clock.now(), quality: GOOD }),
    onChange: () => () => undefined,
  };
}

const disposers: Disposer[] = [];
afterEach(() => {
  for (const dispose of disposers.splice(0)) dispose();
});

async function setup(
  options: {
    readonly model?: "kiln" | "packml";
    readonly io?: "direct" | "table";
    readonly processes?: (store: MemoryStore) => ProcessRepository;
    readonly executor?: Partial<RecipeExecutorOptions>;
  } = {},
) {
  const clock = new SimulatedClock({ start: START });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const published: Published[] = [];
  bus.tap((type, event) => {
    published.push({ type, event: event as unknown as Record<string, unknown> });
  });
  let io = plcIo(plc, clock);
  if (options.io === "table") {
    const table = new CurrentValueTable({ tags: tags.list() });
    const stop = await plc.subscribe(tags.list(), { samplingIntervalMs: 10 }, (samples) =>
      table.update(samples, clock.now()),
    );
    disposers.push(stop);
    io = tableRecipeIo(table, (tag, value, signal) => plc.write(tags.get(tag), value, signal));
  }
  let binding: MachineBinding;
  let state: () => string;
  if (options.model === "packml") {
    const machine = new StateMachine(packmlModel, { machineId: "reactor-1", clock, bus });
    binding = packmlMachineBinding(machine);
    state = () => machine.state;
  } else {
    const machine = new StateMachine(kilnMachineModel, { machineId: "reactor-1", clock, bus });
    binding = kilnMachineBinding(machine);
    state = () => machine.state;
  }
  let ids = 0;
  const executor = new RecipeExecutor({
    machine: binding,
    io,
    catalog: tags,
    clock,
    processes: options.processes?.(store) ?? store.processes,
    resolveRecipe: recipeResolver(store.recipes),
    bus,
    safeState: SAFE_STATE,
    createId: () => `process-${++ids}`,
    ...options.executor,
  });
  const writesOf = (tag: string) => plc.writes.filter((write) => write.tag === tag);
  const ofType = (type: string) => published.filter((entry) => entry.type === type).map((entry) => entry.event);
  return { clock, plc, store, bus, published, executor, state, writesOf, ofType };
}

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("RecipeExecutor: a 200-cycle ALD recipe", () => {
  test("completes with exactly 200 pulses per valve, in order and on time, and is saved completed", async () => {
    const { clock, plc, store, executor, state, writesOf, ofType } = await setup();
    const process = await executor.start(aldRecipe(200));
    expect(process.status).toBe("running");
    expect(state()).toBe("processing");
    await clock.runAll();
    const result = await process.finished;

    expect(result.status).toBe("completed");
    expect(result.stepsCompleted).toBe(800);
    for (const valve of ["valve.tma", "valve.h2o"]) {
      const writes = writesOf(valve);
      expect(writes.filter((write) => write.value === true)).toHaveLength(200);
      expect(writes.filter((write) => write.value === false)).toHaveLength(200);
      // Strictly alternating on/off, each pulse open 20 ms.
      writes.forEach((write, index) => expect(write.value).toBe(index % 2 === 0));
      for (let index = 0; index < writes.length; index += 2) expect(writes[index + 1]!.at - writes[index]!.at).toBe(20);
    }
    expect(plc.writes).toHaveLength(800);
    expect(plc.writes.slice(0, 4).map((write) => [write.tag, write.value, write.at - START])).toEqual([
      ["valve.tma", true, 0],
      ["valve.tma", false, 20],
      ["valve.h2o", true, 70],
      ["valve.h2o", false, 90],
    ]);
    expect(result.endedAt - result.startedAt).toBe(200 * 140);
    expect(result.timing.pulse).toEqual({ count: 400, p50: 0, p99: 0, max: 0 });
    expect(result.timing.wait.count).toBe(400);
    expect(result.persisted).toBe(true);
    expect(state()).toBe("idle");

    const saved = await store.processes.get(process.id);
    expect(saved).toMatchObject({
      status: "completed",
      recipe: { name: "ald-al2o3", version: 1 },
      parameters: { cycles: 200, pulseMs: 20, purgeMs: 50 },
      lastCompletedStep: "steps[0]",
      startedAt: START,
      endedAt: START + 28_000,
    });
    const stream = await store.events.read(process.id);
    expect(stream.at(0)?.type).toBe("process-start");
    expect(stream.at(-1)).toMatchObject({ type: "process-end", payload: { reason: "completed", durationMs: 28_000 } });
    expect(stream.filter((event) => event.type === "step-end")).toHaveLength(801);
    expect(saved?.version).toBe(stream.length);
    expect(ofType("step-start")).toHaveLength(801);
    expect(ofType("machine-state-change").map((event) => event["to"])).toEqual([
      "starting",
      "processing",
      "stopping",
      "idle",
    ]);
  });

  test("step events carry run-time paths, planned and actual timing; pulse timing error is measured", async () => {
    const { clock, plc, executor, ofType } = await setup();
    const process = await executor.start(aldRecipe(3));
    plc.faults.latencyMs = 3;
    await clock.runAll();
    const result = await process.finished;
    // Each write now takes 3 ms: a pulse is open from the on write landing to the off write landing.
    expect(result.timing.pulse).toEqual({ count: 6, p50: 3, p99: 3, max: 3 });
    expect(result.timing.wait).toEqual({ count: 6, p50: 0, p99: 0, max: 0 });
    const ends = ofType("step-end");
    expect(ends.find((event) => event["path"] === "steps[0].loop[2].steps[2]")).toMatchObject({
      kind: "pulse",
      plannedMs: 20,
      actualMs: 23,
      errorMs: 3,
      outcome: "completed",
      aggregateId: process.id,
    });
    expect(ends.at(-1)).toMatchObject({ path: "steps[0]", kind: "loop", outcome: "completed" });
  });

  test("progress is saved after top-level steps and at least every progressSaveIntervalMs", async () => {
    const saves: { at: number; status: string }[] = [];
    const { clock, executor } = await setup({
      processes: (store) => ({
        ...store.processes,
        save: (record: ProcessRecord, events, expectedVersion) => {
          saves.push({ at: clock.now(), status: record.status });
          return store.processes.save(record, events, expectedVersion);
        },
      }),
      executor: { progressSaveIntervalMs: 1_000 },
    });
    const process = await executor.start(aldRecipe(50));
    await clock.runAll();
    await process.finished;
    expect(saves.at(0)?.status).toBe("created");
    expect(saves.at(-1)?.status).toBe("completed");
    const gaps = saves.slice(1).map((save, index) => save.at - saves[index]!.at);
    // 7 s of run time: one save per second (at the first boundary past it; purges are 50 ms).
    expect(Math.max(...gaps)).toBeLessThanOrEqual(1_050);
    expect(saves.length).toBeGreaterThanOrEqual(7);
    expect(saves.length).toBeLessThan(20);
  });
});

describe("RecipeExecutor: pause, resume, abort", () => {
  test("pause takes effect at the next step boundary; nothing is written while paused; resume continues", async () => {
    const { clock, store, executor, state, writesOf, ofType } = await setup();
    const process = await executor.start(aldRecipe(3));
    await clock.advance(10); // mid-pulse of valve.tma
    const paused = process.pause();
    expect(process.status).toBe("running");
    await clock.advance(10); // the pulse ends at 20 ms, then the pause applies
    await paused;
    expect(process.status).toBe("paused");
    expect(state()).toBe("paused");
    expect(ofType("process-pause")).toEqual([
      expect.objectContaining({ nextStep: "steps[0].loop[0].steps[1]", aggregateId: process.id }),
    ]);
    expect((await store.processes.get(process.id))?.status).toBe("paused");
    const written = writesOf("valve.tma").length;
    expect(written).toBe(2);

    await clock.advance(5_000);
    expect(writesOf("valve.tma")).toHaveLength(written);
    expect(clock.pendingTimers).toBe(0);

    await process.resume();
    expect(process.status).toBe("running");
    expect(state()).toBe("processing");
    expect(ofType("process-resume")).toEqual([expect.objectContaining({ pausedMs: 5_000 })]);
    await clock.runAll();
    const result = await process.finished;
    expect(result.status).toBe("completed");
    expect(writesOf("valve.tma").filter((write) => write.value === true)).toHaveLength(3);
    expect(result.endedAt - result.startedAt).toBe(3 * 140 + 5_000);
  });

  test("resume before the pause took effect cancels it; pause and resume reject once the process ended", async () => {
    const { clock, executor } = await setup();
    const process = await executor.start(aldRecipe(1));
    const paused = process.pause();
    await process.resume();
    expect((await rejection(paused)).code).toBe("KILN_INVALID_TRANSITION");
    await clock.runAll();
    expect((await process.finished).status).toBe("completed");
    expect((await rejection(process.pause())).code).toBe("KILN_INVALID_TRANSITION");
    expect((await rejection(process.resume())).code).toBe("KILN_INVALID_TRANSITION");
  });

  test("abort mid-pulse stops at once: the valve is closed, the safe state written, the machine back to idle", async () => {
    const { clock, plc, store, executor, state, ofType } = await setup();
    const process = await executor.start(aldRecipe(200));
    await clock.advance(140 + 10); // cycle 2, valve.tma open
    expect(plc.peek("valve.tma")).toBe(true);
    const before = plc.writes.length;
    const result = await process.abort("operator stop");
    const abortedAt = clock.now();

    expect(result).toMatchObject({ status: "aborted", reason: "operator stop", problems: [], persisted: true });
    expect(plc.writes.slice(before)).toEqual([
      { tag: "valve.tma", value: false, at: abortedAt },
      { tag: "valve.tma", value: false, at: abortedAt },
      { tag: "valve.h2o", value: false, at: abortedAt },
      { tag: "heater.setpoint", value: 0, at: abortedAt },
    ]);
    expect(abortedAt).toBe(START + 150);
    expect(clock.pendingTimers).toBe(0);
    expect(state()).toBe("idle");
    expect(result.lastCompletedStep).toBe("steps[0].loop[0].steps[3]");
    expect(await store.processes.get(process.id)).toMatchObject({
      status: "aborted",
      reason: "operator stop",
      lastCompletedStep: "steps[0].loop[0].steps[3]",
    });
    expect(ofType("step-end").slice(-2)).toEqual([
      expect.objectContaining({ path: "steps[0].loop[1].steps[0]", kind: "pulse", outcome: "aborted" }),
      expect.objectContaining({ path: "steps[0]", kind: "loop", outcome: "aborted" }),
    ]);
    expect(ofType("process-end")).toEqual([expect.objectContaining({ reason: "aborted", message: "operator stop" })]);
  });
});

describe("RecipeExecutor: abort paths and failures", () => {
  test("abort while paused writes the safe state and ends the machine from paused", async () => {
    const { clock, plc, executor, state } = await setup();
    const process = await executor.start(aldRecipe(5));
    await clock.advance(30);
    const paused = process.pause();
    await clock.advance(40); // the purge ends at 70 ms
    await paused;
    expect(state()).toBe("paused");
    const before = plc.writes.length;
    const result = await process.abort("shift change");
    expect(result.status).toBe("aborted");
    expect(plc.writes.slice(before).map((write) => write.tag)).toEqual(["valve.tma", "valve.h2o", "heater.setpoint"]);
    expect(state()).toBe("idle");
    expect(executor.active).toBeUndefined();
  });

  test("trip (interlock): aborts the process with the machine faulted; with no process, writes the safe state", async () => {
    const { clock, plc, executor, state } = await setup();
    const process = await executor.start(aldRecipe(5));
    await clock.advance(75); // valve.h2o open
    const tripped = await executor.trip("chamber overpressure");
    expect(tripped).toEqual({ processId: process.id, problems: [] });
    expect(await process.finished).toMatchObject({ status: "aborted", reason: "chamber overpressure" });
    expect(plc.peek("valve.h2o")).toBe(false);
    expect(state()).toBe("error");

    const second = await setup();
    const before = second.plc.writes.length;
    expect(await second.executor.trip("overpressure while idle")).toEqual({ problems: [] });
    expect(second.plc.writes.slice(before).map((write) => write.tag)).toEqual([
      "valve.tma",
      "valve.h2o",
      "heater.setpoint",
    ]);
    // A trip with no process faults the machine too: the next process needs a reset (review 15z, H2).
    expect(second.state()).toBe("error");
  });

  test("a failed write fails the process: safe state attempted, problems reported, machine faulted", async () => {
    const { clock, plc, store, executor, state } = await setup();
    const process = await executor.start(aldRecipe(5));
    await clock.advance(100);
    plc.faults.unreachable = true;
    await clock.runAll();
    const result = await process.finished;
    expect(result.status).toBe("failed");
    expect(KilnError.is(result.error, "KILN_NOT_CONNECTED")).toBe(true);
    expect(result.reason).toMatch(/^KILN_NOT_CONNECTED/);
    // The pulse's off write failed too (the primary error stays the on write), then every safe-state write.
    expect(result.problems.map((problem) => [problem.stage, problem.tag])).toEqual([
      ["pulse-off", "valve.tma"],
      ["safe-state", "valve.tma"],
      ["safe-state", "valve.h2o"],
      ["safe-state", "heater.setpoint"],
    ]);
    expect(state()).toBe("error");
    expect((await store.processes.get(process.id))?.status).toBe("failed");
  });

  test("a store outage is reported, events are kept, and saved with the next successful save", async () => {
    let failing = false;
    const { clock, store, executor, ofType } = await setup({
      processes: (memory) => ({
        ...memory.processes,
        save: async (record, events, expectedVersion) => {
          if (failing) throw new KilnError("KILN_STORE_ERROR", "store down", { retryable: true });
          return memory.processes.save(record, events, expectedVersion);
        },
      }),
      executor: { progressSaveIntervalMs: 100 },
    });
    const process = await executor.start(aldRecipe(10));
    failing = true;
    await clock.advance(500);
    expect(ofType("process-save-fail").length).toBeGreaterThan(0);
    failing = false;
    await clock.runAll();
    const result = await process.finished;
    expect(result.persisted).toBe(true);
    const stream = await store.events.read(process.id);
    expect(stream.filter((event) => event.type === "step-end")).toHaveLength(41);
    expect(stream.map((event) => event.version)).toEqual(stream.map((_event, index) => index + 1));
  });
});

describe("RecipeExecutor: waitUntil on the simulated process", () => {
  const pumpDown = (onTimeout: "fail" | "continue" | "abort"): RecipeInput => ({
    name: "pump-down",
    version: 1,
    steps: [
      { set: { tag: "valve.pump", value: true } },
      { waitUntil: { condition: { tag: "chamber.pressure", op: "<", value: 0.5 }, timeoutMs: 1_000, onTimeout } },
      { set: { tag: "heater.setpoint", value: 250 } },
    ],
  });

  test("continues as soon as the condition holds on a good sample", async () => {
    const { clock, plc, executor, ofType } = await setup({ io: "table" });
    plc.set("chamber.pressure", 5);
    const process = await executor.start(pumpDown("fail"));
    await clock.advance(300);
    plc.set("chamber.pressure", 0.3);
    plc.faults.badQuality.add("chamber.pressure");
    await clock.advance(100);
    expect(plc.peek("heater.setpoint")).toBe(0); // a bad-quality sample does not satisfy the condition
    plc.faults.badQuality.delete("chamber.pressure");
    await clock.advance(20);
    expect((await process.finished).status).toBe("completed");
    expect(plc.peek("heater.setpoint")).toBe(250);
    const waited = ofType("step-end").find((event) => event["kind"] === "waitUntil")!;
    expect(waited["outcome"]).toBe("completed");
    expect(waited["actualMs"]).toBeGreaterThanOrEqual(400);
    expect(waited["actualMs"]).toBeLessThanOrEqual(420);
  });

  test("onTimeout fail: the process fails with KILN_TIMEOUT and the machine faults", async () => {
    const { clock, plc, executor, state } = await setup({ io: "table" });
    plc.set("chamber.pressure", 5);
    const process = await executor.start(pumpDown("fail"));
    await clock.advance(1_000);
    const result = await process.finished;
    expect(result.status).toBe("failed");
    expect(KilnError.is(result.error, "KILN_TIMEOUT")).toBe(true);
    expect(plc.peek("heater.setpoint")).toBe(0);
    expect(state()).toBe("error");
  });

  test("onTimeout continue: the step ends as timeout and the next step runs", async () => {
    const { clock, plc, executor, ofType } = await setup({ io: "table" });
    plc.set("chamber.pressure", 5);
    const process = await executor.start(pumpDown("continue"));
    await clock.advance(1_000);
    const result = await process.finished;
    expect(result.status).toBe("completed");
    expect(plc.peek("heater.setpoint")).toBe(250);
    expect(ofType("step-end").find((event) => event["kind"] === "waitUntil")).toMatchObject({
      outcome: "timeout",
      actualMs: 1_000,
    });
  });

  test("onTimeout abort: the process is aborted, the safe state written, the machine back to idle", async () => {
    const { clock, plc, executor, state } = await setup({ io: "table" });
    plc.set("chamber.pressure", 5);
    const process = await executor.start(pumpDown("abort"));
    await clock.advance(1_000);
    const result = await process.finished;
    expect(result.status).toBe("aborted");
    expect(result.reason).toContain("chamber.pressure < 0.5");
    expect(plc.writes.at(-1)).toMatchObject({ tag: "heater.setpoint", value: 0 });
    expect(state()).toBe("idle");
  });
});

describe("RecipeExecutor: steps", () => {
  test("ramp writes from, then each increment on a fixed schedule, rounding for integer tags", async () => {
    const { clock, executor, writesOf } = await setup();
    const process = await executor.start({
      name: "flow-ramp",
      version: 1,
      steps: [{ ramp: { tag: "mfc.flow", from: 0, to: 10, durationMs: 1_000, steps: 4 } }],
    });
    await clock.runAll();
    expect((await process.finished).status).toBe("completed");
    expect(writesOf("mfc.flow").map((write) => [write.value, write.at - START])).toEqual([
      [0, 0],
      [3, 250],
      [5, 500],
      [8, 750],
      [10, 1_000],
    ]);
  });

  test("call runs a saved recipe version with the given parameters, under the call's path", async () => {
    const { clock, store, executor, writesOf, ofType } = await setup();
    const purge: RecipeInput = {
      name: "purge",
      version: 2,
      parameters: { ms: { type: "number", default: 100 } },
      steps: [{ pulse: { tag: "valve.h2o", durationMs: { param: "ms" } } }],
    };
    await store.recipes.save(storedRecipeOf(purge, clock.now()));
    const process = await executor.start({
      name: "main",
      version: 1,
      parameters: { purgeMs: { type: "number", default: 40 } },
      steps: [
        { set: { tag: "heater.setpoint", value: 200 } },
        { call: { recipe: "purge", version: 2, parameters: { ms: { param: "purgeMs" } } } },
      ],
    });
    await clock.runAll();
    expect((await process.finished).status).toBe("completed");
    const writes = writesOf("valve.h2o");
    expect(writes.map((write) => write.value)).toEqual([true, false]);
    expect(writes[1]!.at - writes[0]!.at).toBe(40);
    expect(ofType("step-end").map((event) => event["path"])).toEqual([
      "steps[0]",
      "steps[1].call.steps[0]",
      "steps[1]",
    ]);
  });

  test("bus events and the saved event stream are the same, in order", async () => {
    const { clock, store, executor, published } = await setup();
    const process = await executor.start(aldRecipe(2));
    await clock.runAll();
    await process.finished;
    const onBus = published.filter((entry) => entry.event["aggregateId"] === process.id).map((entry) => entry.type);
    const stored = (await store.events.read(process.id)).map((event) => event.type);
    expect(stored).toEqual(onBus);
    expect(stored.slice(0, 3)).toEqual(["process-start", "step-start", "step-start"]);
  });
});

describe("RecipeExecutor: start", () => {
  test("an invalid recipe is rejected with every problem; nothing is saved, written or started", async () => {
    const { plc, store, executor, state } = await setup();
    const error = await rejection(
      executor.start({
        name: "bad",
        version: 1,
        steps: [
          { set: { tag: "chamber.pressure", value: 1 } },
          { loop: { count: 2, steps: [{ pulse: { tag: "valve.nope", durationMs: 10 } }] } },
        ],
      }),
    );
    expect(error.code).toBe("KILN_VALIDATION");
    expect((error.details["issues"] as { path: string }[]).map((issue) => issue.path)).toEqual([
      "steps[0].set.tag",
      "steps[1].loop.steps[0].pulse.tag",
    ]);
    expect(plc.writes).toEqual([]);
    expect(await store.processes.list()).toEqual([]);
    expect(state()).toBe("idle");
  });

  test("one process at a time per machine", async () => {
    const { clock, executor } = await setup();
    const first = await executor.start(aldRecipe(1));
    expect(executor.active).toBe(first);
    expect((await rejection(executor.start(aldRecipe(1)))).code).toBe("KILN_INVALID_TRANSITION");
    await clock.runAll();
    await first.finished;
    expect(executor.active).toBeUndefined();
    const second = await executor.start(aldRecipe(1));
    await clock.runAll();
    expect((await second.finished).status).toBe("completed");
  });

  test("a machine whose binding says it cannot begin refuses the start before anything is saved: no record, no process event (review 15y, L8)", async () => {
    let ready = false;
    const { plc, store, executor, published } = await setup({
      executor: {
        machine: {
          machineId: "reactor-1",
          canBegin: () => ready,
          begin: async () => undefined,
          pause: async () => undefined,
          resume: async () => undefined,
          end: async () => undefined,
          fault: async () => undefined,
        },
      },
    });
    let authorized = 0;
    const refused = await rejection(executor.start(aldRecipe(1), { authorize: () => void authorized++ }));
    expect(refused.code).toBe("KILN_INVALID_TRANSITION");
    // Refused before authorization: a control system records it denied, with no allowed entry.
    expect(authorized).toBe(0);
    expect(await store.processes.list()).toEqual([]);
    expect(published.filter((entry) => entry.type.startsWith("process-"))).toEqual([]);
    expect(plc.writes).toEqual([]);
    // Checked again once authorized: the machine may have moved while the start waited for its entry.
    const second = rejection(
      executor.start(aldRecipe(1), {
        authorize: () => {
          ready = false;
        },
      }),
    );
    ready = true;
    expect((await second).code).toBe("KILN_INVALID_TRANSITION");
    expect(await store.processes.list()).toEqual([]);
  });

  test("a machine that cannot begin fails the start; the process is saved failed, with no process-end (it never started), and nothing is written", async () => {
    const { plc, store, executor, published } = await setup({
      executor: {
        machine: {
          machineId: "reactor-1",
          begin: () => Promise.reject(new KilnError("KILN_INVALID_TRANSITION", "in maintenance")),
          pause: async () => undefined,
          resume: async () => undefined,
          end: async () => undefined,
          fault: async () => undefined,
        },
      },
    });
    expect((await rejection(executor.start(aldRecipe(1)))).code).toBe("KILN_INVALID_TRANSITION");
    expect(await store.processes.list()).toEqual([expect.objectContaining({ status: "failed" })]);
    expect(published.filter((entry) => entry.type === "process-end")).toEqual([]);
    expect(plc.writes).toEqual([]);
    expect(executor.active).toBeUndefined();
  });

  test("the safe state is validated against the catalog", async () => {
    const { executor: _unused, ...context } = await setup();
    expect(
      () =>
        new RecipeExecutor({
          machine: kilnMachineBinding(new StateMachine(kilnMachineModel, { machineId: "m", clock: context.clock })),
          io: plcIo(context.plc, context.clock),
          catalog: tags,
          clock: context.clock,
          processes: context.store.processes,
          safeState: [
            { tag: "chamber.pressure", value: 0 },
            { tag: "valve.tma", value: 1 },
          ],
        }),
    ).toThrow(expect.objectContaining({ code: "KILN_VALIDATION" }));
  });
});

describe("RecipeExecutor on PackML", () => {
  test("drives reset/start → execute, hold while paused, complete at the end", async () => {
    const { clock, executor, state, ofType } = await setup({ model: "packml" });
    const process = await executor.start(aldRecipe(2));
    expect(state()).toBe("execute");
    await clock.advance(5);
    const paused = process.pause();
    await clock.advance(20);
    await paused;
    expect(state()).toBe("held");
    await process.resume();
    expect(state()).toBe("execute");
    await clock.runAll();
    expect((await process.finished).status).toBe("completed");
    expect(state()).toBe("completed");
    expect(ofType("machine-state-change").map((event) => event["to"])).toEqual([
      "resetting",
      "idle",
      "starting",
      "execute",
      "holding",
      "held",
      "unholding",
      "execute",
      "completing",
      "completed",
    ]);
  });
});

describe("recoverInterrupted", () => {
  test("marks created/running/paused processes interrupted, keeping the last completed step", async () => {
    const { clock, store, executor } = await setup({ executor: { progressSaveIntervalMs: 100 } });
    const process = await executor.start(aldRecipe(100));
    await clock.advance(1_000);
    // The host "dies" here: what is in the store is what the next host finds.
    const left = await store.processes.get(process.id);
    expect(left?.status).toBe("running");
    expect(left?.lastCompletedStep).toMatch(/^steps\[0\]\.loop\[\d+\]\.steps\[\d\]$/);
    const base = { recipe: { name: "x", version: 1 }, parameters: {}, createdAt: START, version: 0 };
    await store.processes.save({ ...base, id: "other-machine", machineId: "reactor-2", status: "running" }, [], 0);
    await store.processes.save({ ...base, id: "done", machineId: "reactor-1", status: "completed" }, [], 0);
    await store.processes.save({ ...base, id: "paused", machineId: "reactor-1", status: "paused" }, [], 0);

    const { recovered, failures } = await recoverInterrupted(store.processes, { clock, machineId: "reactor-1" });
    expect(failures).toEqual([]);
    expect(recovered.map((record) => record.id).sort()).toEqual(["paused", process.id].sort());
    expect(await store.processes.get(process.id)).toMatchObject({
      status: "interrupted",
      lastCompletedStep: left?.lastCompletedStep,
      endedAt: clock.now(),
    });
    expect((await store.events.read(process.id)).at(-1)).toMatchObject({
      type: "process-end",
      payload: { reason: "interrupted", lastCompletedStep: left?.lastCompletedStep },
    });
    expect((await store.processes.get("other-machine"))?.status).toBe("running");
    expect((await store.processes.get("done"))?.status).toBe("completed");
    expect(await store.processes.list({ machineId: "reactor-1", status: ["running", "paused", "created"] })).toEqual(
      [],
    );

    // The old in-memory run can no longer overwrite the recovered record.
    await process.abort("cleanup");
    expect((await store.processes.get(process.id))?.status).toBe("interrupted");
  });
});

describe("RecipeExecutor: a start after an abort whose step write is still on the wire (review 15r, M2)", () => {
  const HOLD: RecipeInput = {
    name: "hold",
    version: 1,
    steps: [{ set: { tag: "mfc.flow", value: 40 } }, { wait: { durationMs: 60_000 } }],
  };
  const NEXT: RecipeInput = { name: "next", version: 1, steps: [{ set: { tag: "mfc.flow", value: 10 } }] };

  /** A setup whose write of mfc.flow=40 stays on the wire until `release()`. */
  async function heldSetup(endingWaitMs: number) {
    const parts = await setup({ executor: { endingWaitMs } });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const write = parts.plc.write.bind(parts.plc);
    parts.plc.write = async (tag, value, signal) => {
      if (tag.name === "mfc.flow" && value === 40) {
        await released;
        return write(tag, value);
      }
      return write(tag, value, signal);
    };
    const first = await parts.executor.start(HOLD);
    await parts.clock.advance(10);
    void first.abort("operator stop");
    await parts.clock.advance(10);
    expect(parts.state()).toBe("idle");
    expect(parts.executor.ending()).toEqual({ processId: first.id, lateWrites: ["mfc.flow"] });
    return { ...parts, first, release };
  }

  test("(the example) the start waits for the write, then runs after it", async () => {
    const { executor, clock, first, release, writesOf } = await heldSetup(5_000);
    const next = executor.start(NEXT);
    await clock.advance(1_000);
    release();
    const process = await next;
    await process.finished;
    await first.finished;
    expect(writesOf("mfc.flow").map((write) => write.value)).toEqual([40, 10]);
    expect(executor.ending()).toBeUndefined();
  });

  test("(sibling) still unsettled after endingWaitMs: refused, naming the write; nothing ran", async () => {
    const { executor, clock, release, writesOf } = await heldSetup(500);
    const next = executor.start(NEXT);
    const refused = expect(next).rejects.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
      details: { command: "start", ending: { lateWrites: ["mfc.flow"], waitedMs: 500 } },
    });
    await clock.advance(600);
    await refused;
    await expect(next).rejects.toThrow(/the write of mfc\.flow sent before its abort has not settled/);
    expect(writesOf("mfc.flow").map((write) => write.value)).toEqual([]);
    release();
  });

  // Adversarial review 15e (LOW): the refusal named the late writes' tags to any caller of a start.
  test("(review 15e) the refusal names a late write's tag only to a caller who may know it; the others are counted", async () => {
    const { executor, clock, release } = await heldSetup(500);
    const next = executor.start(NEXT);
    const caught = next.then(
      () => undefined,
      (error: unknown) => error,
    );
    await clock.advance(600);
    const refused = await caught;
    const mayWrite = (tags: readonly string[]): Disclosure => ({
      machine: false,
      process: false,
      tag: (name) => tags.includes(name),
    });
    const toStranger = disclosedRefusal(refused, mayWrite([])) as KilnError;
    expect(toStranger.code).toBe("KILN_INVALID_TRANSITION");
    expect(toStranger.message).not.toContain("mfc.flow");
    expect(toStranger.message).toContain("the write of 1 other tag sent before its abort has not settled");
    expect(toStranger.details).toMatchObject({ ending: { lateWrites: [], lateWritesWithheld: 1 } });
    expect(disclosedRefusal(refused, mayWrite(["mfc.flow"]))).toBe(refused);
    release();
  });
});
