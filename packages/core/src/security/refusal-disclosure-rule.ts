import type { Disclosure } from "../domain/refusal-disclosure";
import type { Authorizer, Principal } from "./authorization";

/**
 * The one rule of what a refusal may tell whom (issue 15, adversarial review 15e), in any machine
 * state (what the caller may do at some time, not now):
 *
 * - the machine's state and accepted commands: to a caller who may `machine.mode` on the machine;
 * - the process's id and status: to a caller who may `machine.mode`, or `recipe.abort` the
 *   process (`processTarget`: the command's target when it is a process command), the rights
 *   that end it (a `recipe.pause`-only operator does not learn it);
 * - a tag the caller did not name (a process's late writes): to a caller who may `machine.mode`,
 *   or `tag.write` that tag.
 *
 * A malformed principal (undefined) learns none of them.
 */
export function disclosureFor(
  authorizer: Pick<Authorizer, "can">,
  principal: Principal | undefined,
  machineId: string | undefined,
  processTarget: string | undefined,
): Disclosure {
  const may = (permission: string, target: string | undefined): boolean =>
    principal !== undefined && authorizer.can(principal, permission, target, { inAnyState: true });
  const machine = may("machine.mode", machineId);
  return Object.freeze({
    machine,
    process: machine || may("recipe.abort", processTarget),
    tag: (name: string) => machine || may("tag.write", name),
  });
}
