import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import type { Principal } from "./authorization";

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
});

const RECIPE: RecipeInput = { name: "r", version: 1, steps: [{ set: { tag: "valve.tma", value: true } }] };

describe("a caller's principal never passes for the system's own (adversarial review 15x, F2)", () => {
  test.each(["(system)", "(audit)"])(
    "principal %s with admin roles: every command entry point refuses it KILN_VALIDATION, nothing reaches the device, and the trail records it under the placeholder",
    async (id) => {
      const parts = simulatedSystem({ tags, machine: { safeState: [{ tag: "valve.tma", value: false }] } });
      await parts.system.start();
      const reserved: Principal = { id, roles: ["admin"] };
      const calls: (() => Promise<unknown>)[] = [
        () => parts.system.writeTag(reserved, "heater.setpoint", 10),
        () => parts.system.saveRecipe(reserved, RECIPE),
        () => parts.system.startRecipe(reserved, RECIPE),
        () => parts.system.pauseProcess(reserved),
        () => parts.system.abortProcess(reserved),
        () => parts.system.sendMachineCommand(reserved, "maintenance"),
      ];
      for (const call of calls) {
        await expect(call()).rejects.toMatchObject({
          code: "KILN_VALIDATION",
          details: { issues: [{ path: "id", message: expect.stringContaining("reserved") }] },
        });
      }
      const writes = parts.plc.writes.filter((write) => write.tag !== "valve.tma" || write.value !== false);
      expect(writes).toEqual([]);
      const audit = await auditTrailAfterStop(parts);
      // Every refusal under the placeholder; under the reserved id, only the system's own entries (no roles).
      expect(audit.filter((entry) => entry.principal === "(invalid principal)")).toHaveLength(calls.length);
      expect(audit.filter((entry) => entry.principal === id && entry.roles.length > 0)).toEqual([]);
    },
  );
});
