import { sayingLess, withoutKeys } from "../domain/refusal-disclosure";
import { KilnError, isRetryable } from "../domain/errors";
// The state machine and its model types are homed in "@kiln/core/advanced"; what their declarations
// name from the main entry is imported by package name (ADR 0027).
import type { Clock, Disposer, KilnEvents } from "@kiln/core";
import type { EventBus } from "../events/event-bus";

/**
 * A transition table: for each state, the commands accepted there and the state each one leads
 * to. A state or command left out accepts nothing.
 */
export type TransitionTable<TState extends string, TCommand extends string> = {
  readonly [TFrom in TState]?: { readonly [TCmd in TCommand]?: TState };
};

/**
 * A state machine model as plain data: its states, commands, initial state and transition
 * table. Build one with {@link defineMachineModel}, which checks it is consistent.
 */
export interface MachineModel<TState extends string, TCommand extends string> {
  /** The model's name, carried by `machine-state-change` events (`"kiln"`, `"packml"`). */
  readonly name: string;
  /** The state a machine starts in unless its options say otherwise. */
  readonly initial: TState;
  /** Every state, in display order. */
  readonly states: readonly TState[];
  /** Every command, in display order; {@link StateMachine.allowedCommands} follows this order. */
  readonly commands: readonly TCommand[];
  /** `state -> command -> next state`. */
  readonly transitions: TransitionTable<TState, TCommand>;
}

/** What {@link defineMachineModel} takes. States and commands are inferred from the two lists. */
export interface MachineModelDefinition<TState extends string, TCommand extends string> {
  /** See {@link MachineModel.name}. */
  readonly name: string;
  /** See {@link MachineModel.initial}. */
  readonly initial: NoInfer<TState>;
  /** See {@link MachineModel.states}. */
  readonly states: readonly TState[];
  /** See {@link MachineModel.commands}. */
  readonly commands: readonly TCommand[];
  /** See {@link MachineModel.transitions}. */
  readonly transitions: TransitionTable<NoInfer<TState>, NoInfer<TCommand>>;
}

/**
 * Checks a machine model and returns a frozen copy of it. The state and command types are
 * inferred from the `states` and `commands` lists, so a misspelt name in `transitions` is also
 * a compile error.
 *
 * @throws TypeError when the model is malformed: empty or duplicated states or commands, an
 * `initial` that is not a state, or a transition from an unknown state, on an unknown command,
 * or to an unknown state. The message lists every problem.
 *
 * @example
 * const doorModel = defineMachineModel({
 *   name: "door",
 *   initial: "closed",
 *   states: ["closed", "open"],
 *   commands: ["open", "close"],
 *   transitions: { closed: { open: "open" }, open: { close: "closed" } },
 * });
 */
export function defineMachineModel<const TState extends string, const TCommand extends string>(
  definition: MachineModelDefinition<TState, TCommand>,
): MachineModel<TState, TCommand> {
  assertMachineModel(definition);
  const transitions: Record<string, Readonly<Record<string, TState>>> = {};
  for (const [from, row] of Object.entries(definition.transitions)) {
    // defineProperty: a state named "__proto__" keeps its row (an assignment would set the prototype).
    Object.defineProperty(transitions, from, {
      value: Object.freeze({ ...(row as Record<string, TState>) }),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return Object.freeze({
    name: definition.name,
    initial: definition.initial,
    states: Object.freeze([...definition.states]),
    commands: Object.freeze([...definition.commands]),
    transitions: Object.freeze(transitions) as TransitionTable<TState, TCommand>,
  });
}

/** Throws a TypeError listing every inconsistency of `model` (see {@link defineMachineModel}). */
function assertMachineModel(model: unknown): void {
  if (typeof model !== "object" || model === null) throw new TypeError("A machine model must be an object");
  const { name, initial, states, commands, transitions } = model as Record<string, unknown>;
  const problems: string[] = [];
  const stateSet = collectNames(states, "states", problems);
  const commandSet = collectNames(commands, "commands", problems);
  if (typeof name !== "string" || name === "") problems.push("name: must be a non-empty string");
  if (typeof initial !== "string" || !stateSet.has(initial)) {
    problems.push(`initial: ${JSON.stringify(initial)} is not one of the states`);
  }
  if (typeof transitions !== "object" || transitions === null || Array.isArray(transitions)) {
    problems.push("transitions: must be an object of state -> command -> state");
  } else {
    for (const [from, row] of Object.entries(transitions)) {
      if (!stateSet.has(from)) problems.push(`transitions.${from}: unknown state "${from}"`);
      if (typeof row !== "object" || row === null || Array.isArray(row)) {
        problems.push(`transitions.${from}: must be an object of command -> state`);
        continue;
      }
      for (const [command, to] of Object.entries(row as Record<string, unknown>)) {
        if (!commandSet.has(command)) problems.push(`transitions.${from}.${command}: unknown command "${command}"`);
        if (typeof to !== "string" || !stateSet.has(to)) {
          problems.push(`transitions.${from}.${command}: unknown target state ${JSON.stringify(to)}`);
        }
      }
    }
  }
  if (problems.length > 0) {
    const label = typeof name === "string" && name !== "" ? ` "${name}"` : "";
    throw new TypeError(`Malformed machine model${label}: ${problems.join("; ")}`);
  }
}

function collectNames(value: unknown, field: string, problems: string[]): Set<string> {
  const names = new Set<string>();
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${field}: must be a non-empty array of names`);
    return names;
  }
  value.forEach((item: unknown, index) => {
    if (typeof item !== "string" || item === "") problems.push(`${field}[${index}]: must be a non-empty string`);
    else if (names.has(item)) problems.push(`${field}[${index}]: duplicate "${item}"`);
    else names.add(item);
  });
  return names;
}

/**
 * Where a machine is: its current state, since when, and how it got there. A new frozen object
 * is made on every transition, so a snapshot never changes under its holder.
 */
export interface MachineSnapshot<TState extends string, TCommand extends string> {
  /** The machine's id. */
  readonly machineId: string;
  /** The model's name. */
  readonly model: string;
  /** The current state. */
  readonly state: TState;
  /** When the machine entered `state`, ms since the Unix epoch (construction time for the initial state). */
  readonly since: number;
  /** The state before `state`; absent until the first transition. */
  readonly previous?: TState;
  /** The command that led to `state`; absent until the first transition. */
  readonly lastCommand?: TCommand;
}

/** A transition being attempted, as guards and entry/exit actions see it. */
export interface TransitionRequest<TState extends string, TCommand extends string, TContext = unknown> {
  /** The machine's id. */
  readonly machineId: string;
  /** The state being left. */
  readonly from: TState;
  /** The state the table leads to. */
  readonly to: TState;
  /** The command sent. */
  readonly command: TCommand;
  /** The `context` passed to {@link StateMachine.send}, if any. */
  readonly context: TContext | undefined;
}

/** A completed transition, as {@link StateMachine.onTransition} listeners receive it. */
export interface MachineTransition<
  TState extends string,
  TCommand extends string,
  TContext = unknown,
> extends TransitionRequest<TState, TCommand, TContext> {
  /** The model's name. */
  readonly model: string;
  /** When the transition was committed, ms since the Unix epoch. */
  readonly at: number;
}

/** A guard's refusal, with the reason reported in the error's `details.reason`. */
export interface GuardDenial {
  /** Always false. */
  readonly allowed: false;
  /** Why the transition is refused, in words an operator can act on ("door open"). */
  readonly reason: string;
}

/** What a guard returns: `true` allows; `false` or a {@link GuardDenial} refuses. */
export type GuardResult = boolean | GuardDenial;

/**
 * Decides whether a transition may happen. It may be async (read an interlock, ask the PLC).
 * It sees `from` and `to`, so one guard per command can also judge individual transitions.
 */
export type TransitionGuard<TState extends string, TCommand extends string, TContext = unknown> = (
  request: TransitionRequest<TState, TCommand, TContext>,
) => GuardResult | Promise<GuardResult>;

/** An entry or exit action. It may be async; the transition waits for it. */
export type StateAction<TState extends string, TCommand extends string, TContext = unknown> = (
  request: TransitionRequest<TState, TCommand, TContext>,
) => void | Promise<void>;

/** Receives every completed transition of one machine. */
export type TransitionListener<TState extends string, TCommand extends string, TContext = unknown> = (
  transition: MachineTransition<TState, TCommand, TContext>,
) => void;

/** Options of {@link StateMachine}. */
export interface StateMachineOptions<TState extends string, TCommand extends string, TContext = unknown> {
  /** Identifies the machine in events and errors; also the event's `aggregateId`. */
  readonly machineId: string;
  /** Source of the `since` and `at` timestamps. */
  readonly clock: Clock;
  /** Where `machine-state-change` events go. Without a bus, only local listeners hear transitions. */
  readonly bus?: EventBus<KilnEvents>;
  /** Guards by command, consulted after the table allows a command and before any action runs. */
  readonly guards?: { readonly [TCmd in TCommand]?: TransitionGuard<TState, TCommand, TContext> };
  /** Actions run when a state is entered, after the exit action of the state left. */
  readonly onEnter?: { readonly [TName in TState]?: StateAction<TState, TCommand, TContext> };
  /** Actions run when a state is left, before the entry action of the next state. */
  readonly onExit?: { readonly [TName in TState]?: StateAction<TState, TCommand, TContext> };
  /**
   * The state to start in (to resume a machine persisted elsewhere). Its entry action is not run.
   * @default model.initial
   */
  readonly initial?: TState;
}

/**
 * A typed finite state machine driven by commands, on a {@link MachineModel}.
 *
 * `send` runs one transition at a time: calls made while a transition is in progress wait in
 * order, and each is judged against the state the previous one produced. A transition runs:
 *
 * 1. table lookup: a command the current state does not accept rejects;
 * 2. the command's guard, if any: a refusal rejects;
 * 3. the exit action of the current state, then the entry action of the target state;
 * 4. commit: the state changes, `machine-state-change` is published on the bus, local
 *    listeners are called, and `send` resolves with the new state.
 *
 * Every rejection is a {@link KilnError} with code `KILN_INVALID_TRANSITION` and
 * `details: { machineId, state, command, allowed, stage }` (`stage`: `"table" | "guard" |
 * "exit" | "enter"`), and leaves the state, the snapshot and the event stream untouched.
 *
 * Failure of an action: when an exit or entry action throws or rejects, the transition does not
 * happen. The state stays where it was and no event is published, but side effects the actions
 * already had (the exit action when the entry action fails) are not undone. The error is
 * wrapped with the original as `cause`, `details.target`, and `retryable` copied from the cause,
 * so a retry policy can decide to send the command again. A guard that throws is treated the
 * same way (stage `"guard"`).
 *
 * Actions and guards must not await `send` on their own machine: that call waits behind the
 * transition running it. Firing it without awaiting (`void machine.send("started")` in an entry
 * action) is fine and runs right after the current transition commits.
 *
 * @example
 * const machine = new StateMachine(kilnMachineModel, { machineId: "kiln-1", clock, bus });
 * await machine.send("start"); // "starting"
 * machine.can("pause"); // false
 */
export class StateMachine<TState extends string, TCommand extends string, TContext = unknown> {
  /** The model this machine runs. */
  readonly model: MachineModel<TState, TCommand>;
  /** The machine's id. */
  readonly machineId: string;
  readonly #options: StateMachineOptions<TState, TCommand, TContext>;
  readonly #table = new Map<TState, Map<TCommand, TState>>();
  readonly #listeners = new Set<TransitionListener<TState, TCommand, TContext>>();
  #snapshot: MachineSnapshot<TState, TCommand>;
  #queue: Promise<unknown> = Promise.resolve();

  /**
   * @throws TypeError when the model is malformed, `machineId` is empty, or `initial` is not a
   * state of the model.
   */
  constructor(model: MachineModel<TState, TCommand>, options: StateMachineOptions<TState, TCommand, TContext>) {
    assertMachineModel(model);
    if (typeof options.machineId !== "string" || options.machineId === "") {
      throw new TypeError("machineId: must be a non-empty string");
    }
    const initial = options.initial ?? model.initial;
    if (!model.states.includes(initial)) {
      throw new TypeError(`initial: "${initial}" is not a state of machine model "${model.name}"`);
    }
    this.model = model;
    this.machineId = options.machineId;
    this.#options = options;
    for (const state of model.states) {
      // Own rows only: a state named like an Object.prototype member ("constructor") has none.
      const row: { readonly [TCmd in TCommand]?: TState } =
        (Object.hasOwn(model.transitions, state) ? model.transitions[state] : undefined) ?? {};
      const targets = new Map<TCommand, TState>();
      for (const command of model.commands) {
        const target = Object.hasOwn(row, command) ? row[command] : undefined;
        if (target !== undefined) targets.set(command, target);
      }
      this.#table.set(state, targets);
    }
    this.#snapshot = Object.freeze({
      machineId: this.machineId,
      model: model.name,
      state: initial,
      since: options.clock.now(),
    });
  }

  /** The current (committed) state. */
  get state(): TState {
    return this.#snapshot.state;
  }

  /** The current state with its timestamp, previous state and last command. */
  get snapshot(): MachineSnapshot<TState, TCommand> {
    return this.#snapshot;
  }

  /**
   * True when the table accepts `command` in the current state. Guards are not consulted (they
   * may be async), and sends still queued are not accounted for.
   */
  can(command: TCommand): boolean {
    return this.#targetOf(this.#snapshot.state, command) !== undefined;
  }

  /** The commands the table accepts in the current state, in the model's command order. */
  allowedCommands(): TCommand[] {
    return [...(this.#table.get(this.#snapshot.state)?.keys() ?? [])];
  }

  /**
   * Sends `command`; resolves with the new state once the transition is committed and the bus's
   * async handlers for its event have settled. Waits for transitions already in progress.
   *
   * @param context passed to the guard and to the exit and entry actions.
   * @throws KilnError `KILN_INVALID_TRANSITION` when the command is not accepted in the state
   * the machine is in when its turn comes, a guard refuses or throws, or an action fails; the
   * state is then unchanged. See the class documentation.
   */
  send(command: TCommand, context?: TContext): Promise<TState> {
    const turn = this.#queue.then(() => this.#transition(command, context));
    this.#queue = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn.then(async ({ state, published }) => {
      await published;
      return state;
    });
  }

  /** Calls `listener` after every committed transition, after the bus event. Returns a disposer. */
  onTransition(listener: TransitionListener<TState, TCommand, TContext>): Disposer {
    const entry: TransitionListener<TState, TCommand, TContext> = (transition) => listener(transition);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  async #transition(
    command: TCommand,
    context: TContext | undefined,
  ): Promise<{ state: TState; published: Promise<void> }> {
    const from = this.#snapshot.state;
    const to = this.#targetOf(from, command);
    if (to === undefined) {
      const allowed = this.allowedCommands();
      throw this.#error(
        `Machine "${this.machineId}" cannot accept command "${command}" in state "${from}"; ` +
          `allowed there: ${allowed.length > 0 ? allowed.join(", ") : "none"}.`,
        { command, allowed, stage: "table" },
      );
    }
    const request: TransitionRequest<TState, TCommand, TContext> = {
      machineId: this.machineId,
      from,
      to,
      command,
      context,
    };

    const guard = this.#options.guards?.[command];
    if (guard !== undefined) {
      let verdict: GuardResult;
      try {
        verdict = await guard(request);
      } catch (cause) {
        throw this.#failure(request, "guard", cause);
      }
      if (verdict !== true) {
        const reason = typeof verdict === "object" && verdict !== null ? verdict.reason : "refused by guard";
        throw this.#error(`Machine "${this.machineId}" refused command "${command}" in state "${from}": ${reason}.`, {
          command,
          target: to,
          reason,
          allowed: this.allowedCommands(),
          stage: "guard",
        });
      }
    }

    try {
      await this.#options.onExit?.[from]?.(request);
    } catch (cause) {
      throw this.#failure(request, "exit", cause);
    }
    try {
      await this.#options.onEnter?.[to]?.(request);
    } catch (cause) {
      throw this.#failure(request, "enter", cause);
    }

    const at = this.#options.clock.now();
    this.#snapshot = Object.freeze({
      machineId: this.machineId,
      model: this.model.name,
      state: to,
      since: at,
      previous: from,
      lastCommand: command,
    });
    const published =
      this.#options.bus?.publish("machine-state-change", {
        at,
        aggregateId: this.machineId,
        machineId: this.machineId,
        model: this.model.name,
        from,
        to,
        command,
      }) ?? Promise.resolve();
    this.#notify({ ...request, model: this.model.name, at });
    return { state: to, published };
  }

  #notify(transition: MachineTransition<TState, TCommand, TContext>): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(transition);
      } catch (error) {
        // A listener's failure must not undo or fail a committed transition; report it instead.
        void this.#options.bus?.publish("handler-error", {
          at: transition.at,
          eventType: "machine-state-change",
          error,
        });
      }
    }
  }

  #targetOf(state: TState, command: TCommand): TState | undefined {
    return this.#table.get(state)?.get(command);
  }

  #failure(request: TransitionRequest<TState, TCommand, TContext>, stage: "guard" | "exit" | "enter", cause: unknown) {
    const what =
      stage === "guard" ? "its guard" : `the ${stage} action of "${stage === "exit" ? request.from : request.to}"`;
    const detail = cause instanceof Error ? cause.message : String(cause);
    return this.#error(
      `Machine "${this.machineId}" stayed in "${request.from}": command "${request.command}" failed in ${what}: ${detail}`,
      { command: request.command, target: request.to, allowed: this.allowedCommands(), stage },
      cause,
    );
  }

  #error(message: string, details: Record<string, unknown> & { command: TCommand }, cause?: unknown): KilnError {
    const error = new KilnError("KILN_INVALID_TRANSITION", message, {
      cause,
      retryable: cause === undefined ? false : isRetryable(cause),
      details: { machineId: this.machineId, state: this.#snapshot.state, ...details },
    });
    // To a caller who may not know the machine's state (review 15e): no state, no accepted
    // commands, no target state; a guard's reason (the interlocks that hold) is kept.
    const reason = typeof details.reason === "string" ? details.reason : undefined;
    const kept = withoutKeys(error.details, ["state", "allowed", "target"]);
    return sayingLess(error, (disclosure) =>
      disclosure.machine
        ? undefined
        : {
            message:
              `Machine "${this.machineId}" refused command "${String(details.command)}"` +
              `${reason === undefined ? "" : `: ${reason}`}. Its state is not shown to this caller.`,
            details: kept,
          },
    );
  }
}
