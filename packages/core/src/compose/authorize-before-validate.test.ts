import { describe, expect, test } from "vitest";
import { KilnError, KilnValidationError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import type { Principal } from "../security/authorization";
import type { ControlSystem } from "./control-system";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

// Issue 20, F5 (adversarial pass on the OPC UA server): a target no command accepts (too long,
// control characters, not a string) was validated before the principal was authorized, so a
// principal without the right learned the validation rule and the audit recorded KILN_VALIDATION
// instead of the refusal. ADR 0007: authorization first, for every command kind.

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

const viewer: Principal = { id: "vic", roles: ["viewer"] };
const operator: Principal = { id: "olga", roles: ["operator"] };
const engineer: Principal = { id: "erik", roles: ["engineer"] };

/** 5000 characters: no command accepts it (targets are at most 256). */
const OVERSIZED = "x".repeat(5000);

async function build({ grants = ["heater.*"] }: { readonly grants?: readonly string[] } = {}) {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    authorization: { operatorWritableTags: [...grants] },
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return { ...parts, audit: () => auditTrailAfterStop(parts) };
}

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

const recipeNamed = (name: string): RecipeInput => ({
  name,
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 10 } }],
});

/** Every command kind whose target the caller names, with that target. */
const commands: ReadonlyArray<
  readonly [string, string, (system: ControlSystem, principal: Principal, target: string) => Promise<unknown>]
> = [
  ["tag.write", "writeTag", (system, principal, target) => system.writeTag(principal, target, 1)],
  ["recipe.start", "startSavedRecipe", (system, principal, target) => system.startSavedRecipe(principal, target, 1)],
  ["recipe.start", "startRecipe", (system, principal, target) => system.startRecipe(principal, recipeNamed(target))],
  ["recipe.save", "saveRecipe", (system, principal, target) => system.saveRecipe(principal, recipeNamed(target))],
  ["alarm.acknowledge", "acknowledgeAlarm", (system, principal, target) => system.acknowledgeAlarm(principal, target)],
  [
    "alarm.shelve",
    "shelveAlarm",
    (system, principal, target) => system.shelveAlarm(principal, target, { durationMs: 60_000 }),
  ],
  ["alarm.unshelve", "unshelveAlarm", (system, principal, target) => system.unshelveAlarm(principal, target)],
  ["alarm.suppress", "suppressAlarm", (system, principal, target) => system.suppressAlarm(principal, target, true)],
  [
    "alarm.out-of-service",
    "setAlarmInService",
    (system, principal, target) => system.setAlarmInService(principal, target, false),
  ],
  [
    "tag.write",
    "refuseCommand",
    (system, principal, target) =>
      system.refuseCommand(principal, {
        permission: "tag.write",
        target,
        reason: new KilnValidationError("bridge write", [{ path: "value", message: "must be a number" }]),
      }),
  ],
];

describe("every command is authorized before its target is validated (ADR 0007; issue 20, F5)", () => {
  test.each(commands)(
    "%s (%s) by a viewer on a 5000-character target: KILN_FORBIDDEN, audited as the refusal, the target bounded",
    async (permission, _method, issue) => {
      const { system, plc, audit } = await build();
      const error = await rejection(issue(system, viewer, OVERSIZED));
      expect(error.code).toBe("KILN_FORBIDDEN");
      // No validation rule is told to a principal without the right.
      expect(error.message).not.toMatch(/at most 256|must be/);
      expect(error.message.length).toBeLessThan(600);
      expect(String((error.details as { target?: unknown }).target)).toMatch(/…\(truncated, 5000 chars\)$/);
      expect(plc.writes).toEqual([]);
      const entries = await audit();
      expect(entries).toHaveLength(1);
      const [entry] = entries;
      expect(entry).toMatchObject({ principal: "vic", action: permission, outcome: "denied" });
      expect(entry?.reason).toMatch(/^KILN_FORBIDDEN: /);
      expect(entry?.reason).not.toContain("KILN_VALIDATION");
      expect(entry?.target).toBe(`${"x".repeat(256)}…(truncated, 5000 chars)`);
    },
  );

  test("a viewer naming a tag with a NUL and a right-to-left override is refused KILN_FORBIDDEN; message and entry show them escaped", async () => {
    const { system, audit } = await build();
    const error = await rejection(system.writeTag(viewer, "heater\u202E.setpoint\u0000", 1));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(error.message).toContain("heater\\u{202E}.setpoint\\u{0000}");
    expect(error.message).not.toMatch(/[\p{Cc}\p{Cf}]/u);
    const [entry] = await audit();
    expect(entry?.reason).toMatch(/^KILN_FORBIDDEN: /);
    expect(entry?.target).toBe("heater\\u{202E}.setpoint\\u{0000}");
  });

  test("a refusal's audit reason shows a malformed target written out once, as its message does (not escaped again)", async () => {
    const { system, audit } = await build();
    const error = await rejection(system.writeTag(viewer, "heater.setpoint\u0000\n", 1));
    const [entry] = await audit();
    expect(entry?.reason).toBe(`KILN_FORBIDDEN: ${error.message}`);
    expect(entry?.reason).toContain('on "heater.setpoint\\u{0000}\\u{000A}"');
    expect(entry?.reason).not.toContain("\\u{005C}");
    expect(entry?.reason).not.toMatch(/[\p{Cc}\p{Cf}]/u);
  });

  test("a principal id with a backslash (a domain user) is written out once, in the message and in the reason", async () => {
    const { system, audit } = await build();
    const domainUser: Principal = { id: "PLANT\\vic", roles: ["viewer"] };
    const error = await rejection(system.writeTag(domainUser, "heater.setpoint\u0000", 1));
    expect(error.message).toContain(
      '"PLANT\\u{005C}vic" (roles: viewer) may not tag.write on "heater.setpoint\\u{0000}"',
    );
    const [entry] = await audit();
    expect(entry?.reason).toBe(`KILN_FORBIDDEN: ${error.message}`);
  });

  test("a target that is not a string: KILN_FORBIDDEN for a viewer (recorded as (invalid target)), no crash", async () => {
    const { system, audit } = await build();
    const error = await rejection(system.writeTag(viewer, 42 as unknown as string, 1));
    expect(error.code).toBe("KILN_FORBIDDEN");
    const [entry] = await audit();
    expect(entry).toMatchObject({ outcome: "denied", target: "(invalid target)" });
    expect(entry?.reason).toMatch(/^KILN_FORBIDDEN: /);
  });

  test("a grant limited to targets decides on a name of at most 256 characters as given: an operator gets KILN_FORBIDDEN outside heater.* and the validation rule inside it; a longer name is no target", async () => {
    const { system, plc, audit } = await build();
    // Not granted on the name it gave: the refusal, no rule.
    expect((await rejection(system.writeTag(operator, `valve.${OVERSIZED}`, true))).code).toBe("KILN_FORBIDDEN");
    // Granted on it (heater.* matches): authorized, so told what is wrong with it.
    const invalid = await rejection(system.writeTag(operator, "heater.\u0000", 1));
    expect(invalid.code).toBe("KILN_VALIDATION");
    expect(invalid.message).toContain("target: must");
    // Longer than any name: no target, which heater.* does not match (bounded matching cost, adv20d F1).
    expect((await rejection(system.writeTag(operator, `heater.${OVERSIZED}`, 1))).code).toBe("KILN_FORBIDDEN");
    // Not a string: a grant limited to targets never matches it; an unlimited grant does.
    expect((await rejection(system.writeTag(operator, 42 as unknown as string, 1))).code).toBe("KILN_FORBIDDEN");
    expect((await rejection(system.writeTag(engineer, 42 as unknown as string, 1))).code).toBe("KILN_VALIDATION");
    expect((await rejection(system.writeTag(engineer, `heater.${OVERSIZED}`, 1))).code).toBe("KILN_VALIDATION");
    expect(plc.writes).toEqual([]);
    expect((await audit()).map((entry) => [entry.principal, entry.reason?.split(":")[0], entry.outcome])).toEqual([
      ["olga", "KILN_FORBIDDEN", "denied"],
      ["olga", "KILN_VALIDATION", "denied"],
      ["olga", "KILN_FORBIDDEN", "denied"],
      ["olga", "KILN_FORBIDDEN", "denied"],
      ["erik", "KILN_VALIDATION", "denied"],
      ["erik", "KILN_VALIDATION", "denied"],
    ]);
  });

  test("authorizing a 5 MB target against many target-limited grants costs what a 256-character one does (adv20d F1: 1.6 s of blocked event loop)", async () => {
    const patterns = Array.from({ length: 20 }, (_, index) => `line1.*.zone${index}.*`);
    const { system, plc } = await build({ grants: patterns });
    const huge = `line1.${"a.".repeat(2_500_000)}zone19.x`;
    const timed = async (target: string): Promise<number> => {
      const started = performance.now();
      expect((await rejection(system.writeTag(operator, target, 1))).code).toMatch(
        /KILN_FORBIDDEN|KILN_VALIDATION|KILN_TAG_UNKNOWN/,
      );
      return performance.now() - started;
    };
    await timed("line1.a.zone0.y".padEnd(256, "y"));
    // The fastest of three each: a load spike on the host slows one try, not all three.
    const fastest = async (target: string): Promise<number> =>
      Math.min(await timed(target), await timed(target), await timed(target));
    const small = await fastest("line1.a.zone0.y".padEnd(256, "y"));
    const large = await fastest(huge);
    // Before: proportional to the 5 MB (about 1,000x the small one); now both a bounded check (slack for a loaded host).
    expect(large).toBeLessThan(10 * small + 50);
    expect(plc.writes).toEqual([]);
  });
});
