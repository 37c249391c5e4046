import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { AttributeIds, DataType, StatusCodes } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

/**
 * Refusals were coalesced by the set of targets they named, so a viewer rotating its target (a
 * Write of the Description of another ns=0 node each call, a Method called on another object each
 * call) left one audit entry per call: 24,832 entries in 25 s from one session, enough to push an
 * operator's real Write out of a store keeping 1,000 entries. They are coalesced by what is refused,
 * per principal (every session of it): at most ten entries and one summary per kind and window.
 */

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
});

let pki: TestPki;
let served: ServedTestSystem;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, system: { authorization: { operatorWritableTags: ["heater.*"] } } });
}, 60_000);

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

const audit = async (): Promise<AuditEntry[]> => served.store.audit.query({ from: 0, to: Date.now() + 1 });
const byVic = async (): Promise<AuditEntry[]> => (await audit()).filter((entry) => entry.principal === "vic");

/** ns=0 nodes that exist (the standard address space), found by reading their NodeClass. */
async function existingNodes(
  session: Awaited<ReturnType<typeof connect>>["session"],
  count: number,
): Promise<string[]> {
  const ids = Array.from({ length: 1000 }, (_, index) => `ns=0;i=${2000 + index}`);
  const read = await session.read(ids.map((nodeId) => ({ nodeId, attributeId: AttributeIds.NodeClass })));
  return ids.filter((_, index) => read[index]!.statusCode === StatusCodes.Good).slice(0, count);
}

describe("refusal coalescing by what is refused", () => {
  test("a viewer's Writes rotating over 150 ns=0 nodes leave at most ten entries per kind while the operator's Writes each keep theirs", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    const olga = await connect(served.server, pki.trusted, user("olga"));
    try {
      const nodes = await existingNodes(vic.session, 150);
      expect(nodes.length).toBe(150);
      const before = (await byVic()).length;
      const answers = new Set<string>();
      for (const [index, nodeId] of nodes.entries()) {
        const status = await vic.session.write({
          nodeId,
          attributeId: AttributeIds.Description,
          value: { value: { dataType: DataType.LocalizedText, value: { text: "x" } } },
        });
        answers.add(status.name);
        if (index % 50 === 0) {
          // Allowed commands are never coalesced: each of the operator's Writes has its entry.
          const written = await olga.session.write({
            nodeId: served.server.nodeIdOf("heater.setpoint"),
            attributeId: AttributeIds.Value,
            value: { value: { dataType: DataType.Double, value: 40 + index / 50 } },
          });
          expect(written).toBe(StatusCodes.Good);
        }
      }
      expect([...answers].every((name) => name.startsWith("Bad"))).toBe(true);
      const added = (await byVic()).slice(before);
      // At most ten entries per kind of refusal in the window (the rest counted in its summary), not one per call.
      expect(added.length).toBeLessThanOrEqual(10 * answers.size);
      const olgas = (await audit()).filter((entry) => entry.principal === "olga" && entry.outcome === "allowed");
      expect(olgas).toHaveLength(3);
    } finally {
      await Promise.all([vic.close(), olga.close()]);
    }
  }, 60_000);

  test("Method calls on rotating object ids from three sessions of one viewer leave at most ten entries per kind", async () => {
    const sessions = await Promise.all([1, 2, 3].map(() => connect(served.server, pki.trusted, user("vic"))));
    try {
      const machine = `ns=${served.server.namespaceIndex};s=@Machine`;
      const before = (await byVic()).length;
      const answers = new Set<string>();
      for (let index = 0; index < 90; index++) {
        const [result] = await sessions[index % 3]!.session.call([
          { objectId: `ns=0;i=${2000 + index}`, methodId: `${machine}.Pause`, inputArguments: [] },
        ]);
        answers.add(result!.statusCode.name);
      }
      expect([...answers].every((name) => name.startsWith("Bad"))).toBe(true);
      const added = (await byVic()).slice(before);
      expect(added.length).toBeGreaterThanOrEqual(1); // the first refusal of a kind is recorded at once
      // One per kind of refusal (all answered BadUserAccessDenied to a viewer, each kind with its
      // own StatusCode: an object that does not exist, one without the Method, a node that is no
      // object): a handful, not 90.
      expect(added.length).toBeLessThanOrEqual(4 * 10);
    } finally {
      await Promise.all(sessions.map((session) => session.close()));
    }
  }, 60_000);

  test("when the windows end, each summary counts its refusals and distinct targets: nothing goes uncounted", async () => {
    await served.server.stop();
    const summaries = (await byVic()).filter((entry) => /more refused of the same kind/.test(entry.reason ?? ""));
    expect(summaries.length).toBeGreaterThanOrEqual(2);
    const counts = summaries.map((entry) => /(\d+) more refused of the same kind/.exec(entry.reason ?? "")![1]);
    const distinct = summaries.map((entry) => /\((\d+) distinct targets?/.exec(entry.reason ?? "")?.[1]);
    // The Writes and calls not audited on their own are each counted in a summary.
    const total = counts.reduce((sum, count) => sum + Number(count), 0);
    expect(total).toBeGreaterThanOrEqual(150 + 90 - 10 * 5); // all but ten per kind (at most five kinds)
    expect(distinct.every((value) => value !== undefined && Number(value) > 1)).toBe(true);
  }, 30_000);
});
