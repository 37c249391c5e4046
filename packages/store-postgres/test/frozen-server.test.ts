import { createServer, type Server, type Socket } from "node:net";
import { defineTags } from "@kiln/core";
import { afterEach, expect, test } from "vitest";
import { PostgresStore } from "../src/index";

/**
 * A server that completes the PostgreSQL startup handshake and then never answers a query:
 * what a frozen (SIGSTOPped) server looks like to a client whose connection is already open.
 */
function frozenServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.once("data", () => {
      const authenticationOk = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
      const readyForQuery = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
      socket.write(Buffer.concat([authenticationOk, readyForQuery]));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve({ server, port: typeof address === "object" && address ? address.port : 0, sockets });
    });
  });
}

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
});

test("close() does not wait on a query a frozen server never answers", async () => {
  const { server, port, sockets } = await frozenServer();
  close = () => new Promise((resolve) => server.close(() => resolve()));
  const store = new PostgresStore({
    connectionString: `postgres://kiln@127.0.0.1:${port}/kiln`,
    closeTimeoutMs: 200,
  });
  const opening = store.open(defineTags({ t: { dataType: "float64" } }).list()).then(
    () => "opened",
    (error: unknown) => error,
  );
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(sockets.size).toBe(1); // the migration query is waiting on the frozen server
  const started = Date.now();
  await store.close();
  expect(Date.now() - started).toBeLessThan(2_000);
  expect(await opening).toMatchObject({ name: expect.any(String) });
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(sockets.size).toBe(0);
});

test("closeTimeoutMs must be a positive integer", () => {
  expect(() => new PostgresStore({ closeTimeoutMs: 0 })).toThrow(
    expect.objectContaining({ code: "KILN_VALIDATION", message: expect.stringContaining("closeTimeoutMs") }),
  );
});

test("open() against a server that accepts the connection and never answers the handshake fails fast and retryably (connectTimeoutMs)", async () => {
  // A blackholed server: the TCP connection opens, the startup message is never answered.
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(() => resolve(undefined)));
  };
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const store = new PostgresStore({
    connectionString: `postgres://kiln@127.0.0.1:${port}/kiln`,
    connectTimeoutMs: 300,
  });
  const started = Date.now();
  const error = await store.open(defineTags({ t: { dataType: "float64" } }).list()).then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(error).toMatchObject({ code: "KILN_STORE_ERROR", retryable: true });
  await store.close();
});

test("connectTimeoutMs must be a positive integer", () => {
  expect(() => new PostgresStore({ connectTimeoutMs: 0 })).toThrow(
    expect.objectContaining({ code: "KILN_VALIDATION", message: expect.stringContaining("connectTimeoutMs") }),
  );
});
