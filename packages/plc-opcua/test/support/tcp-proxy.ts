import net from "node:net";

/**
 * A TCP proxy in front of a server, to cut the network while the server stays up: `drop()`
 * destroys every open connection and refuses new ones until `restore()`. Counts the
 * connections clients opened (refused ones included).
 */
export class TcpProxy {
  readonly #server = net.createServer((client) => this.#accept(client));
  readonly #sockets = new Set<net.Socket>();
  readonly #targetPort: number;
  #down = false;
  /** Connections clients opened through the proxy, refused ones included. */
  connections = 0;

  constructor(targetPort: number) {
    this.#targetPort = targetPort;
  }

  /** Listens on a free port of 127.0.0.1; resolves to the endpoint URL to give the driver. */
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `opc.tcp://127.0.0.1:${(this.#server.address() as net.AddressInfo).port}`;
  }

  /** Cuts every connection and refuses new ones. */
  drop(): void {
    this.#down = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** Accepts connections again. */
  restore(): void {
    this.#down = false;
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    this.connections++;
    if (this.#down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.#targetPort, "127.0.0.1");
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.#sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
