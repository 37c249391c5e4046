import type { Namespace, UAObject, UAVariable } from "node-opcua-address-space";
import type { ISessionContext } from "node-opcua-address-space-base";
import type { CallMethodResultOptions } from "node-opcua-types";
import type { Variant } from "node-opcua-variant";
import type { ServerRuntime } from "./opcua-server-runtime-loader";

/** The string identifier of a node of the machine object (`@Machine`, `@Machine.State`...). `@` never occurs in a tag name. */
export function machineIdentifier(name?: string): string {
  return name === undefined ? "@Machine" : `@Machine.${name}`;
}

/** The machine's variables the server keeps current. */
export type MachineVariable = "State" | "ProcessId" | "Recipe" | "ProcessStatus";

/** One Method's input arguments (as decoded) and its outcome. */
export type MethodHandler = (
  inputs: readonly unknown[],
  context: ISessionContext,
) => Promise<{ readonly statusCode: number; readonly outputs?: readonly unknown[] }>;

/** What the machine's Methods do, by Method name. */
export interface MachineMethods {
  readonly StartRecipe: MethodHandler;
  readonly Pause: MethodHandler;
  readonly Resume: MethodHandler;
  readonly Abort: MethodHandler;
  readonly SendCommand: MethodHandler;
}

const VARIABLES: readonly { readonly name: MachineVariable; readonly description: string }[] = [
  { name: "State", description: "The machine's state (its state machine: Kiln model or PackML)." },
  { name: "ProcessId", description: "The id of the running recipe process; empty when none." },
  { name: "Recipe", description: "The running recipe as <name> v<version>; empty when none." },
  {
    name: "ProcessStatus",
    description: "running, paused, or how the last process ended (completed, aborted, failed, interrupted).",
  },
];

/**
 * Adds the `Machine` object under `parent`: String variables `State`, `ProcessId`, `Recipe`,
 * `ProcessStatus` (read-only) and the Methods `StartRecipe(Name, Version) → ProcessId`,
 * `Pause()`, `Resume()`, `Abort(Reason)`, `SendCommand(Command) → State`, each calling `methods`.
 * Each Method's UserExecutable attribute is `userExecutable(name, context)` for the reading
 * session (whether its principal holds the Method's permission); a call is still made and
 * refused, audited, by Kiln's command path.
 * @returns a setter of the machine variables.
 */
export function addMachineNodes(
  runtime: ServerRuntime,
  namespace: Namespace,
  parent: UAObject,
  methods: MachineMethods,
  userExecutable: (name: keyof MachineMethods, context: ISessionContext) => boolean,
): (name: MachineVariable, value: string) => void {
  const machine = namespace.addObject({
    browseName: "Machine",
    nodeId: `s=${machineIdentifier()}`,
    componentOf: parent,
    description: "The machine's state, its recipe process, and its commands (each authorized and audited by Kiln).",
  });
  const variables = new Map<MachineVariable, UAVariable>();
  for (const { name, description } of VARIABLES) {
    variables.set(
      name,
      namespace.addVariable({
        componentOf: machine,
        browseName: name,
        nodeId: `s=${machineIdentifier(name)}`,
        dataType: "String",
        accessLevel: "CurrentRead",
        userAccessLevel: "CurrentRead",
        minimumSamplingInterval: 0,
        description,
        value: { dataType: runtime.DataType.String, value: "" },
      }),
    );
  }

  const string = (name: string, description: string) => ({
    name,
    description: { text: description },
    dataType: runtime.DataType.String,
    valueRank: -1,
  });
  const add = (
    name: keyof MachineMethods,
    description: string,
    inputArguments: ReturnType<typeof string>[],
    outputArguments: ReturnType<typeof string>[],
  ): void => {
    const method = namespace.addMethod(machine, {
      browseName: name,
      nodeId: `s=${machineIdentifier(name)}`,
      description,
      inputArguments,
      outputArguments,
      executable: true,
      userExecutable: true,
    });
    // Only the UserExecutable attribute reads this: the Call service asks the session's
    // permission itself, so a refused call still reaches Kiln and is audited.
    Object.defineProperty(method, "getUserExecutableFlag", {
      configurable: true,
      value: (context: ISessionContext | null) => (context ? userExecutable(name, context) : true),
    });
    method.bindMethod(async (inputs: Variant[], context: ISessionContext): Promise<CallMethodResultOptions> => {
      const { statusCode, outputs = [] } = await methods[name](
        inputs.map((input) => input.value as unknown),
        context,
      );
      return {
        statusCode: runtime.getStatusCodeFromCode(statusCode),
        outputArguments: outputArguments.map((argument, index) => ({
          dataType: argument.dataType,
          value: (outputs[index] ?? "") as string,
        })),
      };
    });
  };
  add(
    "StartRecipe",
    "Starts a saved recipe version as a process (recipe.start).",
    [
      string("Name", "The recipe's name."),
      { ...string("Version", "The recipe version."), dataType: runtime.DataType.UInt32 },
    ],
    [string("ProcessId", "The id of the process started.")],
  );
  add("Pause", "Pauses the running process at its next step boundary (recipe.pause).", [], []);
  add("Resume", "Resumes the paused process (recipe.resume).", [], []);
  add(
    "Abort",
    "Aborts the running process and writes the safe state (recipe.abort).",
    [string("Reason", "Why; may be empty.")],
    [],
  );
  add(
    "SendCommand",
    "Sends a command to the machine's state machine (machine.mode).",
    [string("Command", "The command, e.g. maintenance, reset.")],
    [string("State", "The machine's state after the command.")],
  );

  return (name, value) => {
    variables.get(name)?.setValueFromSource({ dataType: runtime.DataType.String, value });
  };
}
