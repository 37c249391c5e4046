import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { AttributeIds, DataType, StatusCodes } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

// A read-only viewer repeating a refused single Write, Method call or condition Method fills the
// audit trail no faster than one entry per kind per 10 s window, plus one summary counting the
// rest when the window ends (or the server stops): every refusal counted, none lost. Allowed
// commands are never coalesced.

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", range: { min: 0, max: 400 }, access: "readwrite" },
  "chamber.pressure": { dataType: "float64" },
});

let pki: TestPki;
let served: ServedTestSystem;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: {
      authorization: { operatorWritableTags: ["heater.*"] },
      alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2 }],
    },
  });
}, 60_000);

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

async function audit(action: string): Promise<AuditEntry[]> {
  return (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) => entry.action === action);
}

/** Every refusal an entry stands for: 1, plus the count of a summary's "N more refused". */
function counted(entries: readonly AuditEntry[]): number {
  return entries.reduce((sum, entry) => {
    const more = /(\d+) more refused of the same kind/u.exec(entry.reason ?? "");
    return sum + (more ? Number(more[1]) : 1);
  }, 0);
}

describe("repeated refusals from one session are coalesced, and counted", () => {
  test("a viewer's loop of refused single Writes, Pause calls and Acknowledges leaves ten entries and one summary each", async () => {
    const ns = served.server.namespaceIndex;
    const viewer = await connect(served.server, pki.trusted, user("vic"));
    const operator = await connect(served.server, pki.trusted, user("olga"));
    try {
      for (let index = 0; index < 30; index += 1) {
        const status = await viewer.session.write({
          nodeId: `ns=${ns};s=heater.setpoint`,
          attributeId: AttributeIds.Value,
          value: { value: { dataType: DataType.Double, value: 5 } },
        });
        expect(status).toBe(StatusCodes.BadUserAccessDenied);
      }
      for (let index = 0; index < 20; index += 1) {
        const result = await viewer.session.call({
          objectId: `ns=${ns};s=@Machine`,
          methodId: `ns=${ns};s=@Machine.Pause`,
          inputArguments: [],
        });
        expect(result.statusCode).toBe(StatusCodes.BadUserAccessDenied);
      }
      for (let index = 0; index < 10; index += 1) {
        const result = await viewer.session.call({
          objectId: `ns=${ns};s=@Alarm.chamber.pressure:HI`,
          methodId: "ns=0;i=9111", // AcknowledgeableConditionType.Acknowledge
          inputArguments: [
            { dataType: DataType.ByteString, value: Buffer.from("x") },
            { dataType: DataType.LocalizedText, value: { text: "x" } },
          ],
        });
        expect(result.statusCode).toBe(StatusCodes.BadUserAccessDenied);
      }
      // Allowed commands are never coalesced: each has its entry.
      for (let index = 0; index < 5; index += 1) {
        const status = await operator.session.write({
          nodeId: `ns=${ns};s=heater.setpoint`,
          attributeId: AttributeIds.Value,
          value: { value: { dataType: DataType.Double, value: 10 + index } },
        });
        expect(status).toBe(StatusCodes.Good);
      }
      const writes = await audit("tag.write");
      // The first ten refusals of a kind in a window have their own entry; the rest are counted.
      expect(writes.filter((entry) => entry.principal === "vic")).toHaveLength(10);
      expect(writes.filter((entry) => entry.principal === "olga" && entry.outcome === "allowed")).toHaveLength(5);
      expect(await audit("recipe.pause")).toHaveLength(10);
      expect(await audit("alarm.acknowledge")).toHaveLength(10);
    } finally {
      await Promise.all([viewer.close(), operator.close()]);
    }
    // Stopping the server writes the windows' summaries: every refusal is counted.
    await served.server.stop();
    const byViewer = async (action: string) => (await audit(action)).filter((entry) => entry.principal === "vic");
    for (const [action, count, entryCount] of [
      ["tag.write", 30, 11],
      ["recipe.pause", 20, 11],
      ["alarm.acknowledge", 10, 10], // exactly ten: all had their own entry, no summary
    ] as const) {
      const end = Date.now() + 5_000;
      while ((await byViewer(action)).length < entryCount && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const entries = await byViewer(action);
      expect(entries, action).toHaveLength(entryCount);
      expect(
        entries.every((entry) => entry.outcome === "denied"),
        action,
      ).toBe(true);
      expect(counted(entries), action).toBe(count);
    }
  }, 60_000);
});
