import { once } from "node:events";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { createInterface } from "node:readline";
import type { TagValue } from "@kiln/core";
import { KlpErrorCodes, encodeKlpValue } from "./klp-protocol";

/** Options of {@link KlpServer}. */
export interface KlpServerOptions {
  /** The addresses the device has, with their initial values. */
  readonly values: Readonly<Record<string, TagValue>>;
  /** Addresses a client may read but not write. */
  readonly readOnly?: readonly string[];
}

/**
 * A KLP device on loopback, for examples and tests: holds one value per address and answers
 * `READ` and `WRITE` lines. {@link KlpServer.stop} drops every client, as a device switched off would.
 */
export class KlpServer {
  /** How many request lines it has answered. */
  requests = 0;
  /** While true the device reads requests but answers none (a hung device). */
  stalled = false;
  readonly #values: Map<string, string>;
  readonly #readOnly: ReadonlySet<string>;
  readonly #sockets = new Set<Socket>();
  readonly #server = createServer((socket) => this.#serve(socket));

  constructor(options: KlpServerOptions) {
    this.#values = new Map(Object.entries(options.values).map(([address, value]) => [address, encodeKlpValue(value)]));
    this.#readOnly = new Set(options.readOnly);
  }

  /** Listens on 127.0.0.1, on `port` or a free one; resolves with the port. Can start again after {@link stop}. */
  async start(port = 0): Promise<number> {
    this.#server.listen(port, "127.0.0.1");
    await once(this.#server, "listening");
    return (this.#server.address() as AddressInfo).port;
  }

  /** Sets a value from the device side, as the process would. */
  set(address: string, value: TagValue): void {
    this.#values.set(address, encodeKlpValue(value));
  }

  /** Drops every client but keeps listening, as a device that reset its connections would. */
  dropClients(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  /** Drops every client and stops listening. */
  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => undefined); // a client vanishing is the client's problem
    createInterface({ input: socket }).on("line", (line) => {
      if (!this.stalled) socket.write(`${this.#answer(line)}\n`);
    });
  }

  #answer(line: string): string {
    this.requests++;
    const [command, ...args] = line.split(" ");
    if (command === "READ") {
      return ["OK", ...args.map((address) => this.#values.get(address) ?? `ERR:${KlpErrorCodes.UnknownAddress}`)].join(
        " ",
      );
    }
    if (command === "WRITE" && args.length === 2) {
      const [address, value] = args as [string, string];
      if (!this.#values.has(address)) return `ERR ${KlpErrorCodes.UnknownAddress} unknown address ${address}`;
      if (this.#readOnly.has(address)) return `ERR ${KlpErrorCodes.ReadOnlyAddress} read-only address ${address}`;
      this.#values.set(address, value);
      return "OK";
    }
    return `ERR ${KlpErrorCodes.Syntax} expected READ <address>... or WRITE <address> <value>`;
  }
}
