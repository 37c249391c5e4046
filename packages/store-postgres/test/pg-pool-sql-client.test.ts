import { EventEmitter } from "node:events";
import { expect, test } from "vitest";
import { PgPoolSqlClient, type PgPoolClientLike, type PgPoolLike } from "../src/pg-pool-sql-client";

/** A pool that only emits `connect`, as pg.Pool does for each new connection. */
function emittingPool(): PgPoolLike & EventEmitter {
  return Object.assign(new EventEmitter(), {
    connect: () => Promise.reject(new Error("not used")),
    query: () => Promise.reject(new Error("not used")),
  });
}

function connection(): PgPoolClientLike & EventEmitter {
  return Object.assign(new EventEmitter(), {
    query: () => Promise.reject(new Error("not used")),
    release: () => undefined,
  });
}

test("a new pooled connection has an error listener from the start: a server error before any call is not an uncaught exception", () => {
  const pool = emittingPool();
  new PgPoolSqlClient(pool);
  const client = connection();
  pool.emit("connect", client);
  // Without a listener, EventEmitter throws the error itself (Node's uncaught 'error' rule).
  expect(() =>
    client.emit("error", Object.assign(new Error("terminating connection"), { code: "57P01" })),
  ).not.toThrow();
});

test("a pool without `on` (the subset a host may pass) is still accepted", async () => {
  const client = new PgPoolSqlClient({
    connect: () => Promise.reject(new Error("not used")),
    query: () => Promise.resolve({ rows: [{ one: 1 }], rowCount: 1 }),
  });
  await expect(client.query("SELECT 1 AS one")).resolves.toEqual({ rows: [{ one: 1 }], rowCount: 1 });
});

test("several clients on one pool (stores per schema, reopenings) add the connect listener once, not one per client", () => {
  const pool = emittingPool();
  for (let index = 0; index < 12; index++) new PgPoolSqlClient(pool);
  expect(pool.listenerCount("connect")).toBe(1);
  // So each new connection gets one error listener, not twelve (MaxListenersExceededWarning past ten).
  const client = connection();
  pool.emit("connect", client);
  expect(client.listenerCount("error")).toBe(1);
});
