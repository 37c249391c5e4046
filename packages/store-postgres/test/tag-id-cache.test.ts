import { GOOD, defineTags, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import type { SqlClient, SqlQueryable } from "../src/index";
import { TARGETS, expectKilnError, useTarget } from "./support/database";

// The ids of tag names outside the catalog (a Sparkplug host's metrics, renamed ones included) are
// cached in a bounded cache (`maxCachedTagNames`), not one entry per name ever written (adversarial
// review 19). A dropped name is looked up again in the `tags` table and keeps its id.

const T0 = Date.UTC(2026, 0, 1);
const catalog = defineTags({ "reactor.temperature": { dataType: "float64", unit: "°C" } });
const sample = (tag: string, value: number, timestamp: number): Sample => ({ tag, value, timestamp, quality: GOOD });

/** A client that counts the store's lookups of tag ids by name (`SELECT id, name FROM … tags`). */
function countingLookups(inner: SqlClient): { client: SqlClient; lookups: () => number } {
  let lookups = 0;
  const count = (text: string): void => {
    if (/SELECT id, name FROM .*tags/s.test(text)) lookups++;
  };
  const wrap = (queryable: SqlQueryable): SqlQueryable => ({
    query: (text, parameters) => {
      count(text);
      return queryable.query(text, parameters);
    },
  });
  const client: SqlClient = {
    ...wrap(inner),
    transaction: (work) => inner.transaction((transaction) => work(wrap(transaction))),
    ...(inner.copyBinary ? { copyBinary: inner.copyBinary.bind(inner) } : {}),
  };
  return { client, lookups: () => lookups };
}

for (const { kind, title, skip } of TARGETS) {
  describe.skipIf(skip)(`tag id cache ${title}`, () => {
    const target = useTarget(kind);

    test("names outside the catalog stay bounded: a dropped name is looked up again and keeps its id", async () => {
      const { client, lookups } = countingLookups(target.client());
      const store = await target.store(catalog.list(), { client, maxCachedTagNames: 4 });
      const names = Array.from({ length: 10 }, (_, index) => `edge/metric${index}`);
      // Round 1 registers every name; rounds 2 and 3 meet each again after 9 others: with room
      // for 4, each must be looked up again (an unbounded cache would look up none).
      for (let round = 0; round < 3; round++) {
        for (const [index, name] of names.entries())
          await store.samples.writeBatch([sample(name, round * 100 + index, T0 + round)]);
      }
      expect(lookups()).toBe(30);
      for (const [index, name] of names.entries()) {
        const stored = await store.samples.readSamples({ tag: name, from: T0, to: T0 + 3 });
        expect(stored.map((row) => row.value)).toEqual([index, 100 + index, 200 + index]);
      }
      // One row per name in the tags table: a name looked up again was not registered twice.
      const rows = await target.sql<{ count: string }>(`SELECT count(*) FROM "${store.schema}".tags`);
      expect(Number(rows[0]!.count)).toBe(names.length + 1);
    });

    test("names used again soon stay cached, and the catalog's ids stay whatever else is written", async () => {
      const { client, lookups } = countingLookups(target.client());
      const store = await target.store(catalog.list(), { client, maxCachedTagNames: 4 });
      await store.samples.writeBatch([sample("reactor.temperature", 20, T0)]);
      // One batch of 50 names outside the catalog: more than the cache holds, all stored.
      const many = Array.from({ length: 50 }, (_, index) => sample(`dev/${index}`, index, T0));
      await store.samples.writeBatch(many);
      for (const { tag, value } of many.slice(0, 3))
        expect((await store.samples.readSamples({ tag, from: T0, to: T0 + 1 }))[0]?.value).toBe(value);
      await store.samples.writeBatch([sample("dev/48", 0.5, T0 + 6), sample("dev/49", 0.5, T0 + 6)]);
      const before = lookups();
      // The two most recent names, written again and again: no lookup.
      for (let round = 1; round <= 5; round++)
        await store.samples.writeBatch([sample("dev/48", round, T0 + round), sample("dev/49", round, T0 + round)]);
      // The catalog tag after the churn: no lookup, and history (catalog ids) still answers.
      await store.samples.writeBatch([sample("reactor.temperature", 21, T0 + 10)]);
      expect(lookups() - before).toBe(0);
      const [at] = await store.history.valueAt(["reactor.temperature"], T0 + 10);
      expect(at?.value).toBe(21);
    });

    test("one batch mixing catalog and new names, each new name several times, stores each row under its own tag (issue 16: ids by position)", async () => {
      const { client, lookups } = countingLookups(target.client());
      const store = await target.store(catalog.list(), { client, maxCachedTagNames: 4 });
      const batch = [
        sample("new/a", 1, T0),
        sample("reactor.temperature", 20, T0),
        sample("new/b", 2, T0),
        sample("new/a", 3, T0 + 1),
        sample("reactor.temperature", 21, T0 + 1),
        sample("new/b", 4, T0 + 1),
        sample("new/a", 5, T0 + 2),
      ];
      await store.samples.writeBatch(batch);
      // The two new names are looked up once, together.
      expect(lookups()).toBe(1);
      const values = async (tag: string): Promise<unknown[]> =>
        (await store.samples.readSamples({ tag, from: T0, to: T0 + 3 })).map((row) => row.value);
      expect(await values("new/a")).toEqual([1, 3, 5]);
      expect(await values("new/b")).toEqual([2, 4]);
      expect(await values("reactor.temperature")).toEqual([20, 21]);
    });
  });
}

describe("maxCachedTagNames", () => {
  const target = useTarget("pglite");
  test("is refused below 2 or not an integer, naming the option", async () => {
    for (const bad of [1, 0, 2.5, Number.NaN]) {
      const error = await expectKilnError(
        Promise.resolve().then(() => target.create({ maxCachedTagNames: bad })),
        "KILN_VALIDATION",
      );
      expect(error.message).toContain("maxCachedTagNames");
    }
  });
});
