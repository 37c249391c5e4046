import { KilnError } from "../domain/errors";
import type { CommandContext } from "./audited-command";
import { auditedName } from "./command-input";

/** What a recipe can write, as the audit records it. */
export interface RecipeWriteRequest {
  /** The recipe version. */
  readonly recipe: { readonly name: string; readonly version: number };
  /** Every tag the run can write: its steps, ramps, pulses, called recipes and the machine's safe state. */
  readonly writeSet: readonly string[];
  /**
   * True when the recipe is a saved version, unchanged: its write set was authorized for the
   * principal who saved it ({@link authorizeRecipeSave}).
   */
  readonly saved: boolean;
  /** The parameter values of the run, where it applies. */
  readonly parameters?: Readonly<Record<string, unknown>>;
  /**
   * The id of the process a start will run, where it applies: recorded in the start's entry, so
   * an abort (whose target is the process id) links to the start it cancelled or ended.
   */
  readonly processId?: string;
}

/**
 * Authorizes a recipe start's effects (ADR 0010): records `{ recipe, writeSet, saved, parameters }`
 * as the audit entry's requested value, then, for a recipe that is not a saved version, requires
 * `tag.write` on every tag of its write set for the starting principal **in `machineState`,
 * the state the process starts from**: the principal could make each write by hand
 * there, so a grant limited to other states (`states: ["maintenance"]`) authorizes none of the
 * process's writes (ADR 0010 addendum). A saved version needs nothing more: its write set was
 * authorized when it was saved.
 *
 * @throws KilnError `KILN_FORBIDDEN` naming the recipe, its version and the tags refused
 * (`details.refused`); nothing has run.
 */
export function authorizeRecipeStart(context: CommandContext, request: RecipeWriteRequest, machineState: string): void {
  context.recordRequest(auditValue(request));
  if (request.saved) return;
  refuseUnwritable(context, request, "start", [machineState]);
}

/**
 * Authorizes saving a recipe version: records its write set, and requires `tag.write` on every
 * tag of it for the saving principal in each of `startStates` (the machine states a process can
 * start from; the machine model's states that accept `start`), so that a saved version is one
 * its author could run, whatever state the machine is in while it is saved.
 *
 * @throws KilnError `KILN_FORBIDDEN` naming the recipe, its version and the tags refused.
 */
export function authorizeRecipeSave(
  context: CommandContext,
  request: RecipeWriteRequest,
  startStates: readonly string[],
): void {
  context.recordRequest(auditValue(request));
  refuseUnwritable(context, request, "save", startStates);
}

function refuseUnwritable(
  context: CommandContext,
  request: RecipeWriteRequest,
  command: "start" | "save",
  inStates: readonly string[],
): void {
  const refused = context.refused("tag.write", request.writeSet, { inStates });
  if (refused.length === 0) return;
  const { name, version } = request.recipe;
  const advice =
    command === "start"
      ? "run a saved version of it, or ask for a role that grants tag.write on these tags"
      : "ask for a role that grants tag.write on these tags";
  throw new KilnError(
    "KILN_FORBIDDEN",
    `"${context.principal.id}" may not ${command} recipe "${name}" version ${version}: it writes ${refused.map((tag) => `"${tag}"`).join(", ")}, which they may not write; ${advice}.`,
    {
      details: {
        principal: context.principal.id,
        roles: [...context.principal.roles],
        permission: "tag.write",
        recipe: { name, version },
        refused,
      },
    },
  );
}

function auditValue(request: RecipeWriteRequest): Record<string, unknown> {
  return {
    recipe: { name: auditedName(request.recipe.name), version: request.recipe.version },
    writeSet: [...request.writeSet],
    saved: request.saved,
    ...(request.parameters === undefined ? {} : { parameters: { ...request.parameters } }),
    ...(request.processId === undefined ? {} : { processId: request.processId }),
  };
}
