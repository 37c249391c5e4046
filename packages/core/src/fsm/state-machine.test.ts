import { describe, expect, test, vi } from "vitest";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { SimulatedClock } from "../memory/simulated-clock";
import { kilnMachineModel, type KilnMachineCommand, type KilnMachineState } from "./kiln-machine-model";
import { StateMachine, defineMachineModel, type StateMachineOptions } from "./state-machine";

const START = Date.UTC(2026, 0, 1);

function setup(options: Partial<StateMachineOptions<KilnMachineState, KilnMachineCommand, { user: string }>> = {}) {
  const clock = new SimulatedClock({ start: START });
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const events: KilnEvents["machine-state-change"][] = [];
  bus.on("machine-state-change", (event) => {
    events.push(event);
  });
  const machine = new StateMachine<KilnMachineState, KilnMachineCommand, { user: string }>(kilnMachineModel, {
    machineId: "kiln-1",
    clock,
    bus,
    ...options,
  });
  return { clock, bus, events, machine };
}

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("defineMachineModel", () => {
  const valid = {
    name: "door",
    initial: "closed",
    states: ["closed", "open"],
    commands: ["open", "close"],
    transitions: { closed: { open: "open" }, open: { close: "closed" } },
  } as const;

  test("returns a frozen copy of a consistent model", () => {
    const model = defineMachineModel(valid);
    expect(model).toEqual(valid);
    expect(Object.isFrozen(model)).toBe(true);
    expect(Object.isFrozen(model.states)).toBe(true);
    expect(Object.isFrozen(model.transitions.closed)).toBe(true);
  });

  test.each([
    ["an unknown target state", { transitions: { closed: { open: "ajar" } } }],
    ["an unknown command", { transitions: { closed: { slam: "open" } } }],
    ["an unknown source state", { transitions: { ajar: { open: "open" } } }],
    ["an initial state that is not a state", { initial: "ajar" }],
    ["a duplicate state", { states: ["closed", "open", "closed"] }],
    ["an empty command list", { commands: [] }],
    ["an empty name", { name: "" }],
  ])("throws TypeError on %s", (_label, change) => {
    expect(() => defineMachineModel({ ...valid, ...change } as never)).toThrow(TypeError);
  });
});

describe("StateMachine", () => {
  test("starts in the model's initial state, or in options.initial, without running entry actions", () => {
    const onEnter = vi.fn();
    expect(setup({ onEnter: { idle: onEnter } }).machine.snapshot).toEqual({
      machineId: "kiln-1",
      model: "kiln",
      state: "idle",
      since: START,
    });
    expect(setup({ initial: "paused", onEnter: { paused: onEnter } }).machine.state).toBe("paused");
    expect(onEnter).not.toHaveBeenCalled();
  });

  test("rejects an unknown initial state or an empty machineId with TypeError", () => {
    expect(() => setup({ initial: "sleeping" as KilnMachineState })).toThrow(TypeError);
    expect(() => setup({ machineId: "" })).toThrow(TypeError);
  });

  test("can() and allowedCommands() follow the table for the current state", async () => {
    const { machine } = setup();
    expect(machine.allowedCommands()).toEqual(["start", "fault", "enterMaintenance"]);
    expect(machine.can("start")).toBe(true);
    expect(machine.can("pause")).toBe(false);
    await machine.send("start");
    expect(machine.allowedCommands()).toEqual(["started", "stop", "fault"]);
    expect(machine.can("start")).toBe(false);
  });

  test("send resolves with the new state and updates the snapshot with time, previous state and command", async () => {
    const { machine, clock } = setup();
    await clock.advance(5_000);
    await expect(machine.send("start")).resolves.toBe("starting");
    expect(machine.state).toBe("starting");
    expect(machine.snapshot).toEqual({
      machineId: "kiln-1",
      model: "kiln",
      state: "starting",
      since: START + 5_000,
      previous: "idle",
      lastCommand: "start",
    });
    expect(Object.isFrozen(machine.snapshot)).toBe(true);
  });

  test("each transition publishes machine-state-change on the bus", async () => {
    const { machine, clock, events } = setup();
    await machine.send("start");
    await clock.advance(250);
    await machine.send("started");
    expect(events).toEqual([
      {
        at: START,
        aggregateId: "kiln-1",
        machineId: "kiln-1",
        model: "kiln",
        from: "idle",
        to: "starting",
        command: "start",
      },
      {
        at: START + 250,
        aggregateId: "kiln-1",
        machineId: "kiln-1",
        model: "kiln",
        from: "starting",
        to: "processing",
        command: "started",
      },
    ]);
  });

  test("send resolves only after the async bus handlers of its event have settled", async () => {
    const { machine, clock, bus } = setup();
    bus.on("machine-state-change", () => clock.sleep(100));
    let resolved = false;
    const sent = machine.send("start").then(() => (resolved = true));
    await clock.advance(99);
    expect(machine.state).toBe("starting");
    expect(resolved).toBe(false);
    await clock.advance(1);
    await sent;
    expect(resolved).toBe(true);
  });

  test("a bus handler may await send on the same machine without deadlocking", async () => {
    const { machine, bus } = setup();
    bus.on("machine-state-change", async (event) => {
      if (event.to === "starting") await machine.send("started");
    });
    await expect(machine.send("start")).resolves.toBe("starting");
    expect(machine.state).toBe("processing");
  });

  describe("serialization", () => {
    test("a second send issued at once waits for the first and is judged against the state it produced", async () => {
      const log: string[] = [];
      const { machine, clock } = setup({
        onExit: {
          idle: async () => {
            log.push("exit idle");
            await clock.sleep(1_000);
          },
        },
        onEnter: {
          starting: async () => {
            log.push("enter starting");
            await clock.sleep(500);
          },
          processing: () => {
            log.push("enter processing");
          },
        },
      });
      const settled: string[] = [];
      const first = machine.send("start").then((state) => settled.push(`first:${state}`));
      const second = machine.send("started").then((state) => settled.push(`second:${state}`));

      await clock.advance(1_499);
      expect(machine.state).toBe("idle");
      expect(log).toEqual(["exit idle", "enter starting"]);
      expect(settled).toEqual([]);

      await clock.advance(1);
      await Promise.all([first, second]);
      expect(settled).toEqual(["first:starting", "second:processing"]);
      expect(log).toEqual(["exit idle", "enter starting", "enter processing"]);
      expect(machine.snapshot.since).toBe(START + 1_500);
    });

    test("a command that the first transition made invalid is rejected against the new state", async () => {
      const { machine, clock, events } = setup({ onEnter: { starting: () => clock.sleep(10) } });
      const first = machine.send("start");
      const second = rejection(machine.send("start"));
      await clock.advance(10);
      await expect(first).resolves.toBe("starting");
      const error = await second;
      expect(error.code).toBe("KILN_INVALID_TRANSITION");
      expect(error.details).toMatchObject({ state: "starting", command: "start" });
      expect(events.map((event) => event.to)).toEqual(["starting"]);
    });

    test("a rejected send does not block the ones queued behind it", async () => {
      const { machine } = setup();
      const bad = rejection(machine.send("pause"));
      const good = machine.send("start");
      expect((await bad).code).toBe("KILN_INVALID_TRANSITION");
      await expect(good).resolves.toBe("starting");
    });
  });

  describe("invalid commands", () => {
    test("reject with KILN_INVALID_TRANSITION naming the state, the command and what is allowed", async () => {
      const { machine } = setup();
      const error = await rejection(machine.send("pause"));
      expect(error.code).toBe("KILN_INVALID_TRANSITION");
      expect(error.retryable).toBe(false);
      expect(error.details).toEqual({
        machineId: "kiln-1",
        state: "idle",
        command: "pause",
        allowed: ["start", "fault", "enterMaintenance"],
        stage: "table",
      });
      expect(error.message).toContain("idle");
      expect(error.message).toContain("pause");
      expect(error.message).toContain("start, fault, enterMaintenance");
    });

    test("change nothing: state, snapshot, events, listeners and actions are untouched", async () => {
      const onExit = vi.fn();
      const listener = vi.fn();
      const { machine, clock, events } = setup({ onExit: { idle: onExit } });
      machine.onTransition(listener);
      const before = machine.snapshot;
      await clock.advance(1_000);
      await rejection(machine.send("resume"));
      expect(machine.snapshot).toBe(before);
      expect(events).toEqual([]);
      expect(listener).not.toHaveBeenCalled();
      expect(onExit).not.toHaveBeenCalled();
    });

    test("a name that is an Object.prototype key is just an invalid command", async () => {
      const { machine } = setup();
      const error = await rejection(machine.send("constructor" as KilnMachineCommand));
      expect(error.code).toBe("KILN_INVALID_TRANSITION");
      expect(machine.can("toString" as KilnMachineCommand)).toBe(false);
    });
  });

  describe("guards", () => {
    test("an async guard that allows lets the transition through and sees the request", async () => {
      const guard = vi.fn(async () => true);
      const { machine } = setup({ guards: { start: guard } });
      await expect(machine.send("start", { user: "ada" })).resolves.toBe("starting");
      expect(guard).toHaveBeenCalledWith({
        machineId: "kiln-1",
        from: "idle",
        to: "starting",
        command: "start",
        context: { user: "ada" },
      });
    });

    test("a denial rejects with KILN_INVALID_TRANSITION and its reason, before any action, changing nothing", async () => {
      const onExit = vi.fn();
      const { machine, clock, events } = setup({
        guards: {
          start: async () => {
            await clock.sleep(5);
            return { allowed: false, reason: "door open" };
          },
        },
        onExit: { idle: onExit },
      });
      const sent = rejection(machine.send("start"));
      await clock.advance(5);
      const error = await sent;
      expect(error.code).toBe("KILN_INVALID_TRANSITION");
      expect(error.details).toMatchObject({ state: "idle", command: "start", reason: "door open", stage: "guard" });
      expect(machine.state).toBe("idle");
      expect(events).toEqual([]);
      expect(onExit).not.toHaveBeenCalled();
    });

    test("a guard returning false is a denial with a default reason", async () => {
      const { machine } = setup({ guards: { enterMaintenance: () => false } });
      const error = await rejection(machine.send("enterMaintenance"));
      expect(error.details).toMatchObject({ stage: "guard", reason: expect.any(String) });
      expect(machine.state).toBe("idle");
    });

    test("a guard can judge one transition of a command and not another", async () => {
      const guards = {
        stop: ({ from }: { from: KilnMachineState }) =>
          from === "paused" ? { allowed: false as const, reason: "finish the pause" } : true,
      };
      await expect(setup({ initial: "starting", guards }).machine.send("stop")).resolves.toBe("stopping");
      const paused = setup({ initial: "paused", guards }).machine;
      const error = await rejection(paused.send("stop"));
      expect(error.details).toMatchObject({ state: "paused", reason: "finish the pause" });
      expect(paused.state).toBe("paused");
    });

    test("a guard that throws rejects with the error as cause, state unchanged", async () => {
      const failure = new Error("interlock unreadable");
      const { machine } = setup({
        guards: {
          start: () => {
            throw failure;
          },
        },
      });
      const error = await rejection(machine.send("start"));
      expect(error.code).toBe("KILN_INVALID_TRANSITION");
      expect(error.cause).toBe(failure);
      expect(error.details).toMatchObject({ stage: "guard" });
      expect(machine.state).toBe("idle");
    });
  });

  describe("entry and exit actions", () => {
    test("run exit of the old state, then entry of the new one, with the request and context", async () => {
      const calls: string[] = [];
      const { machine } = setup({
        onExit: { idle: ({ to }) => void calls.push(`exit idle → ${to}`) },
        onEnter: { starting: ({ from, context }) => void calls.push(`enter starting ← ${from} by ${context?.user}`) },
      });
      await machine.send("start", { user: "ada" });
      expect(calls).toEqual(["exit idle → starting", "enter starting ← idle by ada"]);
    });

    test("a failing exit action cancels the transition: state unchanged, no event, entry not run", async () => {
      const failure = new KilnError("KILN_TIMEOUT", "valve did not answer", { retryable: true });
      const onEnter = vi.fn();
      const { machine, events } = setup({
        onExit: {
          idle: async () => {
            throw failure;
          },
        },
        onEnter: { starting: onEnter },
      });
      const error = await rejection(machine.send("start"));
      expect(error.code).toBe("KILN_INVALID_TRANSITION");
      expect(error.cause).toBe(failure);
      expect(error.retryable).toBe(true);
      expect(error.details).toMatchObject({ state: "idle", command: "start", target: "starting", stage: "exit" });
      expect(machine.state).toBe("idle");
      expect(machine.snapshot.lastCommand).toBeUndefined();
      expect(events).toEqual([]);
      expect(onEnter).not.toHaveBeenCalled();
    });

    test("a failing entry action cancels the transition after the exit action ran", async () => {
      const onExit = vi.fn();
      const failure = new Error("heater relay stuck");
      const { machine, events } = setup({
        onExit: { idle: onExit },
        onEnter: {
          starting: () => {
            throw failure;
          },
        },
      });
      const error = await rejection(machine.send("start"));
      expect(error.cause).toBe(failure);
      expect(error.retryable).toBe(false);
      expect(error.details).toMatchObject({ stage: "enter", target: "starting" });
      expect(onExit).toHaveBeenCalledOnce();
      expect(machine.state).toBe("idle");
      expect(events).toEqual([]);
    });
  });

  describe("onTransition", () => {
    test("notifies listeners of each transition until disposed; disposing twice is harmless", async () => {
      const { machine, clock } = setup();
      const seen: string[] = [];
      const dispose = machine.onTransition((transition) => {
        seen.push(`${transition.from}→${transition.to} by ${transition.command} at ${transition.at - START}`);
      });
      await clock.advance(7);
      await machine.send("start", { user: "ada" });
      dispose();
      dispose();
      await machine.send("started");
      expect(seen).toEqual(["idle→starting by start at 7"]);
    });

    test("a listener receives the full transition, including model and context", async () => {
      const listener = vi.fn();
      const { machine } = setup();
      machine.onTransition(listener);
      await machine.send("enterMaintenance", { user: "bob" });
      expect(listener).toHaveBeenCalledWith({
        machineId: "kiln-1",
        model: "kiln",
        from: "idle",
        to: "maintenance",
        command: "enterMaintenance",
        context: { user: "bob" },
        at: START,
      });
    });

    test("the same listener added twice is called twice and each disposer removes one", async () => {
      const listener = vi.fn();
      const { machine } = setup();
      const first = machine.onTransition(listener);
      machine.onTransition(listener);
      first();
      await machine.send("start");
      expect(listener).toHaveBeenCalledOnce();
    });

    test("a throwing listener does not fail the send or starve other listeners; it is reported as handler-error", async () => {
      const { machine, bus } = setup();
      const reported: KilnEvents["handler-error"][] = [];
      bus.on("handler-error", (event) => {
        reported.push(event);
      });
      const failure = new Error("listener bug");
      const other = vi.fn();
      machine.onTransition(() => {
        throw failure;
      });
      machine.onTransition(other);
      await expect(machine.send("start")).resolves.toBe("starting");
      expect(other).toHaveBeenCalledOnce();
      expect(reported).toEqual([{ at: START, eventType: "machine-state-change", error: failure }]);
    });
  });
});

describe("state and command names that are Object.prototype members (review 15r)", () => {
  test('a state named "__proto__" keeps its transitions; a state named "constructor" without a row has none', () => {
    const model = defineMachineModel({
      name: "odd",
      initial: "__proto__",
      states: ["__proto__", "constructor"],
      commands: ["go", "length"],
      transitions: JSON.parse('{"__proto__": {"go": "constructor"}}') as never,
    } as never);
    const clock = new SimulatedClock({ start: 0 });
    const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
    const machine = new StateMachine(model as never, { machineId: "m", clock, bus } as never);
    expect(machine.can("go" as never)).toBe(true);
    const other = new StateMachine(model as never, { machineId: "m", clock, bus, initial: "constructor" } as never);
    expect(other.can("go" as never)).toBe(false);
    expect(other.can("length" as never)).toBe(false);
  });
});
