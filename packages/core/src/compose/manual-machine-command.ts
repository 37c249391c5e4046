import { KilnError } from "../domain/errors";
import { sayingLess, type Disclosure } from "../domain/refusal-disclosure";

const EVERYTHING: Disclosure = Object.freeze({ machine: true, process: true, tag: () => true });

/** The `KILN_INVALID_TRANSITION` of `refusal` told in full, saying less to a caller who may not know it all. */
function refusalSayingLess(
  refusal: (disclosure: Disclosure) => { message: string; details: Record<string, unknown> },
): KilnError {
  const full = refusal(EVERYTHING);
  return sayingLess(new KilnError("KILN_INVALID_TRANSITION", full.message, { details: full.details }), (disclosure) =>
    disclosure.machine && disclosure.process ? undefined : refusal(disclosure),
  );
}

/**
 * What a manual machine command (`ControlSystem.sendMachineCommand`) does, decided in one place
 * so the machine state and the running process never disagree (issue 15, ADR 0042):
 *
 * - `send`: no process runs and the command does not enter a process state: the state machine's
 *   table (and guards) decide.
 * - `abort`: a process runs and the command stops the machine (Kiln `stop`/`fault`, PackML
 *   `stop`/`abort`): the process is aborted through the executor (safe state written, then the
 *   machine binding moves the machine: `fault` true ends in the model's error state); a waiting
 *   start is cancelled and never begins.
 * - `cancel`: no process runs, a start waits and the command stops the machine: the waiting
 *   starts are cancelled (none begins), then the command goes to the machine as `send` would
 *   (the table decides; adversarial review 15z, M3). `fault` is for a process that became active
 *   meanwhile (it is aborted as by `abort`).
 */
type ManualMachineCommand =
  | { readonly kind: "send" }
  | { readonly kind: "abort"; readonly fault: boolean }
  | { readonly kind: "cancel"; readonly fault: boolean };

/** Per built-in model: the states a process runs in, and the commands that abort a running process. */
interface ProcessRules {
  /** States only a running process may enter (a manual command leading into one is refused without a process). */
  readonly processStates: readonly string[];
  /** Manual commands that abort a running process, and whether the machine ends faulted. */
  readonly aborting: Readonly<Record<string, { readonly fault: boolean }>>;
}

/** The rules of the built-in models, by model name; another model has no process states and aborts nothing. */
const RULES: Readonly<Record<string, ProcessRules>> = {
  kiln: {
    processStates: ["starting", "processing", "paused"],
    aborting: { stop: { fault: false }, fault: { fault: true } },
  },
  packml: {
    processStates: [
      "starting",
      "execute",
      "holding",
      "held",
      "unholding",
      "suspending",
      "suspended",
      "unsuspending",
      "completing",
    ],
    aborting: { stop: { fault: false }, abort: { fault: true } },
  },
};

/**
 * Whether `command` stops the machine on the built-in model `model` (Kiln `stop`/`fault`, PackML
 * `stop`/`abort`): a safety function, which acts without waiting for a durable audit entry.
 */
export function stopsMachine(model: string, command: string): boolean {
  const rules = RULES[model];
  return rules !== undefined && Object.hasOwn(rules.aborting, command);
}

/** What {@link manualMachineCommand} needs to know about the machine and the process. */
interface ManualCommandSituation {
  readonly machineId: string;
  /** The model's name (`kiln`, `packml`). */
  readonly model: string;
  /** The machine's current state. */
  readonly state: string;
  /** The model's transitions from `state`: command → next state. */
  readonly accepts: Readonly<Record<string, string>>;
  /** The id of the process active on the machine (running, paused or ending), if any; not a start still waiting. */
  readonly processId: string | undefined;
  /**
   * True when a start is waiting (for its turn or its audit entry) with no process id yet: a
   * command that stops the machine then cancels it, as it would abort a process (review 15y, M4).
   */
  readonly startWaiting?: boolean;
}

/**
 * Decides what the manual machine command `command` does (see {@link ManualMachineCommand}).
 * @throws KilnError `KILN_INVALID_TRANSITION` (`details.stage: "process"`, nothing changes) for
 *   any other command while a process runs or ends, and, without a process, for a command that
 *   would enter a process state (`starting`, `processing`...: a process starts with
 *   `startRecipe`). The refusal names the process, the state and the commands accepted; the
 *   audited command runner cuts it to what its caller may know (`disclosureFor`: a
 *   `machine.maintenance`-only caller learns neither the process nor the state; reviews 15c, 15e).
 */
export function manualMachineCommand(command: string, situation: ManualCommandSituation): ManualMachineCommand {
  const { machineId, model, state, accepts, processId, startWaiting = false } = situation;
  const rules = RULES[model];
  const entersProcess = (next: string | undefined): boolean =>
    next !== undefined && rules?.processStates.includes(next) === true;
  if (processId === undefined && startWaiting && rules !== undefined && Object.hasOwn(rules.aborting, command)) {
    return { kind: "cancel", fault: rules.aborting[command]!.fault };
  }
  if (processId !== undefined) {
    const aborting =
      rules !== undefined && Object.hasOwn(rules.aborting, command) ? rules.aborting[command] : undefined;
    if (aborting !== undefined) return { kind: "abort", fault: aborting.fault };
    const abortWith = rules === undefined ? "" : ` or ${Object.keys(rules.aborting).join("/")} to abort it`;
    const allowed = rules === undefined ? [] : Object.keys(rules.aborting);
    const refusal = (disclosure: Disclosure): { message: string; details: Record<string, unknown> } => {
      // Whether a process runs at all is a process fact: a caller who may not know it is told
      // only that the command is refused now (review 15f, LOW).
      if (!disclosure.process) return unexplained(machineId, command);
      return {
        message:
          `Machine "${machineId}" runs process "${processId}": a manual "${command}" would move the machine away from it. ` +
          `Use pauseProcess, resumeProcess or abortProcess${disclosure.machine ? abortWith : ""}.`,
        details: {
          machineId,
          ...(disclosure.machine ? { state } : {}),
          command,
          stage: "process",
          ...(disclosure.process ? { processId } : {}),
          ...(disclosure.machine ? { allowed } : {}),
          reason: "a process is running",
        },
      };
    };
    throw refusalSayingLess(refusal);
  }
  const target = Object.hasOwn(accepts, command) ? accepts[command] : undefined;
  if (entersProcess(target)) {
    const refusal = (disclosure: Disclosure): { message: string; details: Record<string, unknown> } =>
      !disclosure.process
        ? unexplained(machineId, command)
        : {
            message:
              `Machine "${machineId}" runs no process: a manual "${command}" would enter ` +
              `${disclosure.machine ? `"${target}", ` : ""}a state only a process runs in. Start a process with startRecipe.`,
            details: {
              machineId,
              ...(disclosure.machine ? { state } : {}),
              command,
              stage: "process",
              ...(disclosure.machine
                ? { allowed: Object.keys(accepts).filter((next) => !entersProcess(accepts[next])) }
                : {}),
              reason: "no process is running",
            },
          };
    throw refusalSayingLess(refusal);
  }
  return { kind: "send" };
}

/** A manual command's refusal told to a caller who may not know whether a process runs (review 15f, LOW). */
function unexplained(machineId: string, command: string): { message: string; details: Record<string, unknown> } {
  return {
    message: `Machine "${machineId}" cannot take a manual "${command}" now.`,
    details: { machineId, command, stage: "process" },
  };
}
