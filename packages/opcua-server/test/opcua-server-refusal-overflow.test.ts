import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { AttributeIds, DataType, StatusCodes, UserTokenType, type UserIdentityInfo } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { setRefusalWindowCap } from "../src/opcua-server";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki } from "./support/opcua-fixture";

// Past the server-wide cap of open refusal windows, new scopes share one overflow window. It
// counts each principal's refusals apart: every summary names only the principal whose refusals
// it counts, never the principal who opened the window.

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", range: { min: 0, max: 400 }, access: "readwrite" },
});

let pki: TestPki;
let served: ServedTestSystem;

/** Any user name with password "pw" is a viewer (refused every Write). */
const viewer = (name: string): UserIdentityInfo => ({ type: UserTokenType.UserName, userName: name, password: "pw" });

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: { authorization: { operatorWritableTags: ["heater.*"] } },
    server: {
      identify: (identity) =>
        identity.type === "username" && identity.password === "pw"
          ? { id: identity.userName, roles: ["viewer"] }
          : undefined,
    },
  });
  setRefusalWindowCap(served.server, 1);
}, 60_000);

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

describe("the shared overflow window of refusals", () => {
  test("its summary never names a principal for refusals another principal made", async () => {
    const ns = served.server.namespaceIndex;
    const write = async (client: Awaited<ReturnType<typeof connect>>) =>
      client.session.write({
        nodeId: `ns=${ns};s=heater.setpoint`,
        attributeId: AttributeIds.Value,
        value: { value: { dataType: DataType.Double, value: 5 } },
      });
    const client = await connect(served.server, pki.trusted, viewer("u0"));
    const counts = { u0: 1, u1: 12, u2: 5 };
    try {
      expect(await write(client)).toBe(StatusCodes.BadUserAccessDenied); // u0's window: the cap is reached
      for (const name of ["u1", "u2"] as const) {
        await client.session.changeUser(viewer(name));
        for (let index = 0; index < counts[name]; index += 1) {
          expect(await write(client)).toBe(StatusCodes.BadUserAccessDenied);
        }
      }
    } finally {
      await client.close();
    }
    await served.server.stop(); // ends every window: the summaries are audited
    const entries: AuditEntry[] = (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter(
      (entry) => entry.action === "tag.write" || entry.action === "opcua.Write",
    );
    const more = (entry: AuditEntry) =>
      Number(/(\d+) more refused of the same kind/u.exec(entry.reason ?? "")?.[1] ?? 0);
    // u1 opened the overflow window: its first 10 refusals have entries of their own, 2 were coalesced;
    // u2's first has an entry, its other 4 were coalesced. Nobody's entry counts another principal's refusals.
    for (const name of ["u0", "u1", "u2"] as const) {
      const own = entries.filter((entry) => entry.principal === name);
      expect([name, own.reduce((sum, entry) => sum + (more(entry) > 0 ? 0 : 1), 0)]).toEqual([
        name,
        { u0: 1, u1: 10, u2: 1 }[name],
      ]);
    }
    // Each principal's coalesced refusals are summarised under it alone: u1's 2, u2's 4 (its first had an entry).
    const summaries = entries.filter((entry) => more(entry) > 0);
    expect(summaries.map((entry) => [entry.principal, more(entry)]).sort()).toEqual([
      ["u1", 2],
      ["u2", 4],
    ]);
  }, 60_000);
});
