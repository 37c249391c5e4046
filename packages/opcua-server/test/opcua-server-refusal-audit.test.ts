import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { AttributeIds, DataType, StatusCodes, type WriteValueOptions } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

/**
 * Refusals are audited one entry per kind per call, counting them, and a call repeated alike is
 * coalesced into a counted summary: a viewer's Write of 60 tags leaves one entry, not 60 (one
 * viewer made 2,500 entries/s and stalled the server 0.7–1.6 s with 1,000-node calls). Every
 * entry is recorded before the call is answered.
 */

const VALVES = Array.from({ length: 60 }, (_, index) => `line.valve${String(index + 1).padStart(2, "0")}`);
const tags = defineTags(Object.fromEntries(VALVES.map((name) => [name, { dataType: "bool", access: "readwrite" }])));

let pki: TestPki;
let served: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, server: { limits: { maxNodesPerCall: 100 } } });
  vic = await connect(served.server, pki.trusted, user("vic"));
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await served?.dispose();
  await pki?.dispose();
});

const entries = async (): Promise<AuditEntry[]> =>
  (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) => entry.principal === "vic");

const writes = (names: readonly string[]): WriteValueOptions[] =>
  names.map((name) => ({
    nodeId: served.server.nodeIdOf(name),
    attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Boolean, value: true } },
  }));

describe("refusal audit", () => {
  test("a viewer's Write of 60 tags answers BadUserAccessDenied for each and leaves one entry counting 60, naming the first", async () => {
    const before = (await entries()).length;
    const results = await vic.session.write(writes(VALVES));
    expect(results).toEqual(VALVES.map(() => StatusCodes.BadUserAccessDenied));
    expect(served.plc.writes).toEqual([]);
    const added = (await entries()).slice(before);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatchObject({ action: "tag.write", outcome: "denied", target: "reactor-1" });
    expect(added[0]!.reason).toMatch(
      /KILN_FORBIDDEN.*60 refused in one call: line\.valve01, line\.valve02, line\.valve03, line\.valve04, line\.valve05 and 55 more/s,
    );
  });

  test("refused calls of one kind have their own entries up to ten a window, whatever their targets; the rest are counted", async () => {
    const before = (await entries()).length;
    for (let call = 0; call < 9; call++) await vic.session.write(writes(VALVES.slice(call, call + 2)));
    await vic.session.write(writes(VALVES));
    await vic.session.write(writes(VALVES.slice(0, 2)));
    const added = (await entries()).slice(before);
    // With the first test's, ten: the nine 2-target calls. The two after them are counted in the summary.
    expect(added).toHaveLength(9);
    expect(added[0]!.reason).toMatch(/2 refused in one call: line\.valve01, line\.valve02/);
  });

  test("a request refused whole for its size is audited with its operation count, and once while repeated", async () => {
    const before = (await entries()).length;
    const read = Array.from({ length: 101 }, () => ({
      nodeId: served.server.nodeIdOf("line.valve01"),
      attributeId: 13,
    }));
    await expect(vic.session.read(read)).rejects.toThrow(/BadTooManyOperations/);
    await expect(vic.session.read(read)).rejects.toThrow(/BadTooManyOperations/);
    const added = (await entries()).slice(before);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatchObject({ action: "opcua.Read", outcome: "denied" });
    expect(added[0]!.reason).toMatch(/1 request of 101 operations refused whole/);
  });

  test("when the server stops, what was coalesced is audited as counted summaries: no refusal goes uncounted", async () => {
    const before = (await entries()).length;
    await served.server.stop();
    const added = (await entries()).slice(before);
    const reasons = added.map((entry) => entry.reason ?? "");
    expect(reasons).toContainEqual(
      expect.stringMatching(/62 more refused of the same kind in 2 more calls.*\(60 distinct targets, from .* to .*\)/),
    );
    expect(reasons).toContainEqual(expect.stringMatching(/101 more refused of the same kind in 1 more call/));
  });
});
