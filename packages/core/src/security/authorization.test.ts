import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { Authorizer, PERMISSIONS, defaultRoleTable, type Principal } from "./authorization";

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
    PERMISSIONS.filter((permission) => authorizer.can(principal, permission, "reactor-1"));

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
    expect(authorizer.can(operator, "tag.write", "heater.setpoint")).toBe(true);
    expect(authorizer.can(operator, "tag.write", "mfc.argon")).toBe(true);
    expect(authorizer.can(operator, "tag.write", "valve.tma")).toBe(false);
    expect(authorizer.can(operator, "tag.write", "heater.setpoint.raw")).toBe(false);
    expect(authorizer.can(operator, "tag.write")).toBe(false);
    expect(authorizer.can(engineer, "tag.write", "valve.tma")).toBe(true);
    expect(new Authorizer().can(operator, "tag.write", "heater.setpoint")).toBe(false);
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
