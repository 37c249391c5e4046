import { defineTags } from "@kiln/core";
import { UserTokenType, type UserIdentityInfo } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { OpcuaUserIdentity } from "../src/index";
import {
  connect,
  identify,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
} from "./support/opcua-fixture";

// adv20 F1 (issue 20): the table of failed logins is bounded; once it was full of pairs still in
// their window, a login it could not count was let through to `identify` uncounted, so a user's
// password could be guessed without limit (480 source addresses filled the 10,000 entries, then
// "olga" was guessed 60 times). Now such a login is refused without asking `identify` (fail closed)
// and audited as throttled.
const tags = defineTags({ "chamber.pressure": { dataType: "float64", unit: "mbar" } });

let pki: TestPki;
let served: ServedTestSystem;
/** The user names `identify` was asked about, in order. */
const asked: string[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    server: {
      identify: (identity: OpcuaUserIdentity) => {
        if (identity.type === "username") asked.push(identity.userName);
        return identify(identity);
      },
      // One address key and 9 user keys fill it; the window outlasts the test's logins on a loaded host.
      limits: { maxFailedLogins: 5, failedLoginWindowMs: 600_000, maxTrackedLogins: 10 },
    },
  });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

/** A user name and password identity. */
const login = (userName: string, password: string): UserIdentityInfo => ({
  type: UserTokenType.UserName,
  userName,
  password,
});

const audited = async () =>
  (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter(
    (entry) => entry.action === "opcua.ActivateSession",
  );

describe("a full failed-login table fails closed (adv20 F1)", () => {
  test("once the table is full, guesses for a user it cannot count never reach identify; a pair it tracks still logs in", async () => {
    // Sibling first: olga fails once while there is room, so her pair is tracked.
    await expect(connect(served.server, pki.trusted, login("olga", "guess-0"))).rejects.toThrow(/BadUserAccessDenied/);
    // Made-up user names from the same address fill the table (address key + olga + 8 names = 10).
    for (let index = 0; index < 8; index++) {
      await expect(connect(served.server, pki.trusted, login(`nobody-${index}`, "x"))).rejects.toThrow(
        /BadUserAccessDenied/,
      );
    }
    const before = (await audited()).length;
    asked.length = 0;
    // vic's pair cannot be counted: refused without identify, even with the right password.
    for (let attempt = 0; attempt < 6; attempt++) {
      await expect(connect(served.server, pki.trusted, login("vic", `guess-${attempt}`))).rejects.toThrow(
        /BadUserAccessDenied/,
      );
    }
    await expect(connect(served.server, pki.trusted, user("vic"))).rejects.toThrow(/BadUserAccessDenied/);
    expect(asked).toEqual([]);
    // olga's pair is tracked (one failure, under the limit): her right password still works.
    const olga = await connect(served.server, pki.trusted, user("olga"));
    await olga.close();
    expect(asked).toEqual(["olga"]);
    const entries = (await audited()).slice(before);
    expect(entries.length).toBeGreaterThanOrEqual(1);
    expect(entries[0]!.reason).toMatch(
      /login throttled for user "vic": throttled: the failed-login table is full \(10 /,
    );
    for (const entry of entries) expect(JSON.stringify(entry)).not.toContain("viewer-Pa55");
  });
});
