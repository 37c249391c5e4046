import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import {
  Authorizer,
  PERMISSIONS,
  auditablePrincipalId,
  defaultRoleTable,
  principalSchema,
  snapshotPrincipal,
  type Principal,
} from "./authorization";
import { boundedText } from "./command-input";

const viewer: Principal = { id: "vera", roles: ["viewer"] };
const operator: Principal = { id: "olga", roles: ["operator"] };
const engineer: Principal = { id: "enzo", roles: ["engineer"] };
const admin: Principal = { id: "ada", roles: ["admin"] };

function forbidden(action: () => void): KilnError {
  try {
    action();
  } catch (error) {
    if (KilnError.is(error)) return error;
    throw error;
  }
  throw new Error("expected the check to throw");
}

describe("defaultRoleTable + Authorizer", () => {
  const authorizer = new Authorizer({
    roles: defaultRoleTable({ operatorWritableTags: ["heater.setpoint", "mfc.*"] }),
  });
  const allowed = (principal: Principal) =>
    PERMISSIONS.filter((permission) => authorizer.can(principal, permission, "reactor-1", { machineState: "idle" }));

  test("each default role grants what the table documents", () => {
    expect(allowed(viewer)).toEqual(["read"]);
    expect(allowed(operator)).toEqual([
      "read",
      "recipe.start",
      "recipe.pause",
      "recipe.resume",
      "recipe.abort",
      "alarm.acknowledge",
      "alarm.shelve",
      "alarm.unshelve",
    ]);
    expect(allowed(engineer)).toEqual([
      "read",
      "recipe.start",
      "recipe.pause",
      "recipe.resume",
      "recipe.abort",
      "recipe.save",
      "tag.write",
      "alarm.acknowledge",
      "alarm.shelve",
      "alarm.unshelve",
      "alarm.suppress",
      "alarm.out-of-service",
    ]);
    expect(allowed(admin)).toEqual([...PERMISSIONS]);
  });

  test("operators write only operator-writable tags (patterns); engineers any tag", () => {
    const idle = { machineState: "idle" };
    expect(authorizer.can(operator, "tag.write", "heater.setpoint", idle)).toBe(true);
    expect(authorizer.can(operator, "tag.write", "mfc.argon", idle)).toBe(true);
    expect(authorizer.can(operator, "tag.write", "valve.tma", idle)).toBe(false);
    expect(authorizer.can(operator, "tag.write", "heater.setpoint.raw", idle)).toBe(false);
    expect(authorizer.can(operator, "tag.write", undefined, idle)).toBe(false);
    expect(authorizer.can(engineer, "tag.write", "valve.tma", idle)).toBe(true);
    expect(new Authorizer().can(operator, "tag.write", "heater.setpoint", idle)).toBe(false);
  });

  test("check throws KILN_FORBIDDEN with principal, permission and target", () => {
    expect(() => authorizer.check(operator, "recipe.start", "reactor-1")).not.toThrow();
    const error = forbidden(() => authorizer.check(operator, "machine.mode", "reactor-1"));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(error.details).toEqual({
      principal: "olga",
      roles: ["operator"],
      permission: "machine.mode",
      target: "reactor-1",
    });
  });

  test("a refusal names a huge target bounded, as an audit entry does (review 15g, L1)", () => {
    const huge = "valve." + "x".repeat(300_000);
    const error = forbidden(() => authorizer.check(operator, "tag.write", huge, { machineState: "idle" }));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(error.message.length).toBeLessThan(1_000);
    expect(error.message).toContain(`…(truncated, ${huge.length} chars)`);
    expect(String(error.details?.["target"]).length).toBeLessThan(400);
    // Sibling: a target of the longest name a command may name (256) is shown whole.
    const longest = "valve." + "y".repeat(250);
    expect(
      forbidden(() => authorizer.check(operator, "tag.write", longest, { machineState: "idle" })).message,
    ).toContain(`"${longest}"`);
  });

  test("roles combine; unknown roles and malformed principals get nothing", () => {
    expect(authorizer.can({ id: "x", roles: ["viewer", "engineer"] }, "recipe.save")).toBe(true);
    expect(authorizer.can({ id: "x", roles: ["superuser", "constructor"] }, "read")).toBe(false);
    expect(authorizer.can({ id: "", roles: ["admin"] }, "read")).toBe(false);
    expect(forbidden(() => authorizer.check({ id: "", roles: ["admin"] }, "read")).code).toBe("KILN_VALIDATION");
  });

  test("the host can replace the table, with its own permissions and target-scoped grants", () => {
    const custom = new Authorizer({
      roles: {
        shiftLead: ["read", "batch.release", { permission: "*", targets: ["reactor-2"] }],
      },
    });
    const lead = { id: "lee", roles: ["shiftLead"] };
    expect(custom.can(lead, "batch.release")).toBe(true);
    expect(custom.can(lead, "machine.mode", "reactor-2")).toBe(true);
    expect(custom.can(lead, "machine.mode", "reactor-1")).toBe(false);
    expect(custom.can(operator, "read")).toBe(false);
  });
});

describe("per-state write policy", () => {
  const authorizer = new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) });

  test("by default operators write their tags only while idle (or PackML stopped), engineers never while a process runs, admins always", () => {
    const states = ["idle", "stopped", "starting", "processing", "paused", "execute", "held", "maintenance", "error"];
    const writable = (principal: Principal) =>
      states.filter((machineState) => authorizer.can(principal, "tag.write", "heater.setpoint", { machineState }));
    expect(writable(operator)).toEqual(["idle", "stopped"]);
    expect(writable(engineer)).toEqual(["idle", "stopped", "maintenance", "error"]);
    expect(writable(admin)).toEqual(states);
  });

  test("a grant limited to states never matches a check that names no state, unless asked about any state", () => {
    expect(authorizer.can(operator, "tag.write", "heater.setpoint")).toBe(false);
    expect(authorizer.can(operator, "tag.write", "heater.setpoint", { inAnyState: true })).toBe(true);
    expect(authorizer.can(operator, "tag.write", "valve.tma", { inAnyState: true })).toBe(false);
  });

  test("host grants name their own states and tags", () => {
    const custom = new Authorizer({
      roles: { trim: [{ permission: "tag.write", targets: ["heater.trim"], states: ["processing", "paused"] }] },
    });
    const trimmer = { id: "tia", roles: ["trim"] };
    expect(custom.can(trimmer, "tag.write", "heater.trim", { machineState: "processing" })).toBe(true);
    expect(custom.can(trimmer, "tag.write", "heater.trim", { machineState: "idle" })).toBe(false);
    expect(custom.can(trimmer, "tag.write", "heater.setpoint", { machineState: "processing" })).toBe(false);
  });

  test("a refusal names the machine state only to a principal who may write the tag in another state", () => {
    const running = { machineState: "processing" };
    const operatorError = forbidden(() => authorizer.check(operator, "tag.write", "heater.setpoint", running));
    expect(operatorError.message).toContain('in machine state "processing"');
    expect(operatorError.details).toMatchObject({ machineState: "processing" });
    for (const error of [
      forbidden(() => authorizer.check(viewer, "tag.write", "heater.setpoint", running)),
      forbidden(() => authorizer.check(operator, "tag.write", "valve.tma", running)),
    ]) {
      expect(error.code).toBe("KILN_FORBIDDEN");
      expect(error.message).not.toContain("processing");
      expect(error.details).not.toHaveProperty("machineState");
      expect(error.message).toContain("ask for a role that grants it");
    }
    expect(operatorError.message).toContain("grants it only in other machine states");
    expect(operatorError.message).not.toContain("ask for a role");
  });

  test("a check with no machine state, refused by a state-limited grant, names the state rule, not a missing role (review 15z, L8)", () => {
    const error = forbidden(() => authorizer.check(operator, "tag.write", "heater.setpoint"));
    expect(error.message).toContain("only in some machine states");
    expect(error.message).not.toContain("ask for a role");
    // Sibling: a tag no role of the principal grants still says to ask for a role.
    expect(forbidden(() => authorizer.check(operator, "tag.write", "valve.tma")).message).toContain(
      "ask for a role that grants it",
    );
  });
});

describe("snapshotPrincipal", () => {
  test("reads id and roles once and freezes them", () => {
    let reads = 0;
    const shifty = {
      id: "mallory",
      get roles(): string[] {
        reads++;
        return reads === 1 ? ["viewer"] : ["admin"];
      },
    };
    const { principal } = snapshotPrincipal(shifty);
    expect(principal).toEqual({ id: "mallory", roles: ["viewer"] });
    expect(Object.isFrozen(principal) && Object.isFrozen(principal?.roles)).toBe(true);
    expect(reads).toBe(1);
  });

  test("a malformed or unreadable principal gives KILN_VALIDATION naming the field", () => {
    expect(snapshotPrincipal({ id: "", roles: [] }).error?.issues[0]?.path).toBe("id");
    expect(snapshotPrincipal({ id: "x", roles: [1] }).error?.issues[0]?.path).toBe("roles[0]");
    const throwing = {
      id: "x",
      get roles(): string[] {
        throw new Error("boom");
      },
    };
    expect(snapshotPrincipal(throwing).error?.code).toBe("KILN_VALIDATION");
    expect(snapshotPrincipal(null).principal).toBeUndefined();
  });
});

describe("one length rule: UTF-16 code units, never a split surrogate pair (issue 15, second review)", () => {
  test("a principal id of 200 emoji (400 code units) is refused like 400 ASCII characters", () => {
    const emoji = snapshotPrincipal({ id: "😀".repeat(200), roles: ["operator"] });
    expect(emoji.principal).toBeUndefined();
    expect(emoji.error?.code).toBe("KILN_VALIDATION");
    expect(snapshotPrincipal({ id: "😀".repeat(128), roles: ["operator"] }).principal).toBeDefined();
    expect(snapshotPrincipal({ id: "😀".repeat(129), roles: ["operator"] }).principal).toBeUndefined();
  });

  test("a role of 65 emoji (130 code units) is refused; boundedText never ends in half a pair", () => {
    expect(snapshotPrincipal({ id: "olga", roles: ["😀".repeat(65)] }).principal).toBeUndefined();
    const cut = boundedText("x" + "😀".repeat(300), 256);
    const kept = cut.slice(0, cut.indexOf("…"));
    expect(kept.length).toBe(255);
    expect(/[\uD800-\uDBFF]$/.test(kept)).toBe(false);
    expect(cut).toContain("(truncated, 601 chars)");
  });
});

describe("role tables are validated in one place: a misspelt grant is refused, never widened (issue 15)", () => {
  const issuesOf = (action: () => unknown) => {
    const error = forbidden(() => void action());
    expect(error.code).toBe("KILN_VALIDATION");
    return (error.details as { issues: { path: string; message: string }[] }).issues;
  };

  test("an unknown grant key (`target`, `state`) is refused by path, not ignored", () => {
    expect(
      issuesOf(() => new Authorizer({ roles: { tech: [{ permission: "tag.write", target: ["heater.*"] } as never] } })),
    ).toEqual([{ path: "roles.tech[0].target", message: expect.stringContaining('unknown key "target"') as string }]);
    expect(
      issuesOf(
        () =>
          new Authorizer({
            roles: { tech: [{ permission: "tag.write", targets: ["valve.*"], state: ["maintenance"] } as never] },
          }),
      ),
    ).toEqual([
      { path: "roles.tech[0].state", message: expect.stringContaining("permission, targets, states") as string },
    ]);
  });

  test("targets and states must be arrays of strings; states must be known; a null grant and a misspelt Kiln permission are refused", () => {
    const paths = issuesOf(
      () =>
        new Authorizer({
          roles: {
            a: [{ permission: "tag.write", targets: "heater.*" } as never],
            b: [{ permission: "tag.write", states: "unholding" } as never, null as never, 42 as never],
            c: [{ permission: "tag.write", states: ["holdng"] }, "alarm.acknowlege", { permission: "tag.wirte" }],
          },
        }),
    ).map((issue) => issue.path);
    expect(paths).toEqual([
      "roles.a[0].targets",
      "roles.b[0].states",
      "roles.b[1]",
      "roles.b[2]",
      "roles.c[0].states[0]",
      "roles.c[1]",
      "roles.c[2].permission",
    ]);
  });

  test("a host's own permission outside Kiln's namespaces is still accepted, and the table kept is a frozen copy", () => {
    const table = { lead: ["batch.release", { permission: "*", targets: ["reactor-2"], states: ["idle"] }] } as const;
    const authorizer = new Authorizer({ roles: table });
    expect(authorizer.can({ id: "lee", roles: ["lead"] }, "batch.release")).toBe(true);
    expect(Object.isFrozen(authorizer.roles.lead![1])).toBe(true);
  });

  test("defaultRoleTable refuses a string where a list is expected (it used to spread into characters, one of them `*`)", () => {
    const config = JSON.parse('{"operatorWritableTags":"heater.*"}') as never;
    expect(issuesOf(() => defaultRoleTable(config))).toEqual([
      { path: "operatorWritableTags", message: expect.stringContaining("must be an array") as string },
    ]);
    // Sibling: a misspelt option key and an unknown state.
    expect(
      issuesOf(() =>
        defaultRoleTable({ operatorWritableTag: ["heater.*"], operatorWriteStates: ["idel"] } as never),
      ).map((i) => i.path),
    ).toEqual(["operatorWritableTag", "operatorWriteStates[0]"]);
  });

  test("the TSDoc example of Authorizer holds", () => {
    const authorizer = new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) });
    const ana = { id: "ana", roles: ["operator"] };
    expect(() => authorizer.check(ana, "tag.write", "heater.setpoint", { machineState: "idle" })).not.toThrow();
    expect(
      forbidden(() => authorizer.check(ana, "tag.write", "heater.setpoint", { machineState: "processing" })).code,
    ).toBe("KILN_FORBIDDEN");
    expect(forbidden(() => authorizer.check(ana, "tag.write", "valve.tma", { machineState: "idle" })).code).toBe(
      "KILN_FORBIDDEN",
    );
  });
});

describe("role and record names that are Object.prototype members (review 15r)", () => {
  test('a role named "__proto__" (from JSON) is kept and grants what it says; "constructor" grants nothing', () => {
    const roles = JSON.parse('{"__proto__": ["read", "tag.write"], "viewer": ["read"]}') as Record<string, string[]>;
    const authorizer = new Authorizer({ roles: roles as never });
    expect(authorizer.can({ id: "p", roles: ["__proto__"] }, "tag.write", "heater.setpoint")).toBe(true);
    expect(authorizer.can({ id: "v", roles: ["viewer"] }, "tag.write", "heater.setpoint")).toBe(false);
    expect(authorizer.can({ id: "c", roles: ["constructor", "toString"] }, "read")).toBe(false);
  });
});

describe("auditablePrincipalId: an id an adapter must audit a refusal under, valid or not", () => {
  test("a valid id is kept as it is; control, format and separator characters and lone surrogates become U+FFFD", () => {
    expect(auditablePrincipalId("PLANT\\vera")).toBe("PLANT\\vera");
    expect(auditablePrincipalId("ctl\u0000\u0007\nctl")).toBe("ctl\uFFFD\uFFFD\uFFFDctl");
    expect(auditablePrincipalId("ada\u202Enimda\u2028x\uD800y")).toBe("ada\uFFFDnimda\uFFFDx\uFFFDy");
  });

  test("sibling: an id in parentheses cannot pass for Kiln's own entries; an empty id gets the placeholder; a long one is cut without splitting a pair", () => {
    expect(auditablePrincipalId("(system)")).toBe("\uFFFD(system)");
    expect(auditablePrincipalId("(audit)")).toBe("\uFFFD(audit)");
    expect(auditablePrincipalId("")).toBe("(empty principal id)");
    const cut = auditablePrincipalId("a" + "😀".repeat(300));
    expect(cut.length).toBe(255);
    expect(/[\uD800-\uDBFF]$/u.test(cut)).toBe(false);
    // Whatever it was given (but the empty id), the result is a principal id core takes.
    for (const id of ["(system)", "ctl\u0000", "a" + "😀".repeat(300), "\uDC00", "x".repeat(10_000)])
      expect(principalSchema.safeParse({ id: auditablePrincipalId(id), roles: [] }).success).toBe(true);
  });
});
