import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { KilnError } from "@kiln/core";

/** A real MQTT broker on loopback that a test started and owns. */
export interface TestBroker {
  /** `mosquitto` (the installed binary, own process) or `aedes` (embedded, in this process). */
  readonly kind: "mosquitto" | "aedes";
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  /** The loopback TCP port the broker listens on. */
  readonly port: number;
  /**
   * Stops the broker as a crash would: mosquitto is killed (SIGKILL), aedes drops every
   * connection at once. Clients see their connection lost; Wills are not published by a dead
   * broker. Retained messages are lost (neither broker persists here).
   */
  kill(): Promise<void>;
  /** Starts the broker again on the same port (after {@link TestBroker.kill} or {@link TestBroker.stop}). */
  restart(): Promise<void>;
  /** Stops the broker and frees its port. Safe to call twice. */
  stop(): Promise<void>;
  /** Stops the broker (`await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A free TCP port on 127.0.0.1, from the operating system. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  /* v8 ignore next -- a TCP server listening on a port always has an AddressInfo */
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

/** Where to find mosquitto: `MOSQUITTO_BINARY`, else `/usr/sbin/mosquitto`. */
export function mosquittoPath(): string {
  return process.env.MOSQUITTO_BINARY ?? "/usr/sbin/mosquitto";
}

/**
 * Whether the mosquitto binary is there: `{ available: true }`, or `{ available: false, reason }`
 * with how to enable it (for `describe.skipIf` and a printed reason).
 */
export function mosquittoAvailability():
  { readonly available: true } | { readonly available: false; readonly reason: string } {
  try {
    accessSync(mosquittoPath(), constants.X_OK);
    return { available: true };
  } catch {
    return {
      available: false,
      reason: `no executable mosquitto at ${mosquittoPath()}: install it (apt-get install mosquitto) or set MOSQUITTO_BINARY`,
    };
  }
}

async function waitForPort(port: number, deadlineMs: number, alive: () => string | undefined): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const dead = alive();
    if (dead !== undefined) throw new KilnError("KILN_CONNECTION_FAILED", dead);
    const open = await new Promise<boolean>((resolve) => {
      const socket: Socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > until)
      throw new KilnError("KILN_TIMEOUT", `broker did not listen on port ${port} in ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Starts this test's own `mosquitto -p <port>` (loopback only, no persistence), so the test can
 * kill and restart it.
 *
 * @param options `port` to use (default: a free one).
 * @throws KilnError `KILN_NOT_SUPPORTED` when the binary is absent (see {@link mosquittoAvailability});
 *   `KILN_CONNECTION_FAILED` when it exits at start (its output in the message); `KILN_TIMEOUT`
 *   when it does not listen within 10 s.
 */
export async function startMosquitto(options: { readonly port?: number } = {}): Promise<TestBroker> {
  const availability = mosquittoAvailability();
  if (!availability.available) throw new KilnError("KILN_NOT_SUPPORTED", availability.reason);
  const port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let output = "";
  let exited: string | undefined;

  const start = async (): Promise<void> => {
    output = "";
    exited = undefined;
    const process_ = spawn(mosquittoPath(), ["-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
    child = process_;
    process_.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    process_.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    process_.once("exit", (code, signal) => {
      exited = `mosquitto exited (${signal ?? code}): ${output.trim()}`;
    });
    await waitForPort(port, 10_000, () => exited);
  };
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => running.once("exit", () => resolve()));
    running.kill(signal);
    await gone;
  };

  await start();
  const broker: TestBroker = {
    kind: "mosquitto",
    url: `mqtt://127.0.0.1:${port}`,
    port,
    kill: () => halt("SIGKILL"),
    restart: async () => {
      await halt("SIGTERM");
      await start();
    },
    stop: () => halt("SIGTERM"),
    [Symbol.asyncDispose]: () => halt("SIGTERM"),
  };
  return broker;
}

interface AedesInstance {
  handle: (stream: Socket) => unknown;
  close(callback?: () => void): void;
}

/**
 * Starts an embedded MQTT broker (aedes, in this process) on a loopback port: the default where
 * mosquitto is not installed. Needs the `aedes` package (an optional peer dependency).
 *
 * @param options `port` to use (default: a free one).
 * @throws KilnError `KILN_NOT_SUPPORTED` when `aedes` cannot be imported.
 */
export async function startAedes(options: { readonly port?: number } = {}): Promise<TestBroker> {
  let createBroker: () => Promise<AedesInstance>;
  try {
    const module = (await import("aedes")) as unknown as { Aedes: { createBroker(): Promise<AedesInstance> } };
    createBroker = () => module.Aedes.createBroker();
  } catch (error) {
    throw new KilnError("KILN_NOT_SUPPORTED", "the embedded broker needs aedes: npm install --save-dev aedes", {
      cause: error,
    });
  }
  const port = options.port ?? (await freePort());
  let running: { broker: AedesInstance; server: Server; sockets: Set<Socket> } | undefined;

  const start = async (): Promise<void> => {
    const broker = await createBroker();
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      broker.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    });
    running = { broker, server, sockets };
  };
  const halt = async (): Promise<void> => {
    const current = running;
    running = undefined;
    if (current === undefined) return;
    const closed = new Promise<void>((resolve) => current.server.close(() => resolve()));
    for (const socket of current.sockets) socket.destroy();
    await new Promise<void>((resolve) => current.broker.close(() => resolve()));
    await closed;
  };

  await start();
  return {
    kind: "aedes",
    url: `mqtt://127.0.0.1:${port}`,
    port,
    kill: halt,
    restart: async () => {
      await halt();
      await start();
    },
    stop: halt,
    [Symbol.asyncDispose]: halt,
  };
}

/**
 * Starts a broker for a test: this test's own mosquitto where the binary is installed, else the
 * embedded aedes broker. `KILN_TEST_BROKER=aedes` (or `mosquitto`) forces one.
 */
export async function startTestBroker(options: { readonly port?: number } = {}): Promise<TestBroker> {
  const forced = process.env.KILN_TEST_BROKER;
  if (forced === "aedes") return startAedes(options);
  if (forced === "mosquitto" || mosquittoAvailability().available) return startMosquitto(options);
  return startAedes(options);
}
