import net from "node:net";

/**
 * A TCP proxy in front of a server, to cut the network while the server stays up: `drop()`
 * destroys every open connection and refuses new ones until `restore()`; `dropOnResponse()`
 * cuts just as the server answers a given service, so the answer is lost. Counts the
 * connections clients opened (refused ones included).
 */
export class TcpProxy {
  readonly #server = net.createServer((client) => this.#accept(client));
  readonly #sockets = new Set<net.Socket>();
  readonly #targetPort: number;
  #down = false;
  #blackholed = false;
  #paused = false;
  #serverMuted = false;
  /** Client sockets of the connections {@link blackholeOpen} froze. */
  readonly #frozen = new Set<net.Socket>();
  /** Writes held while paused, in order, delivered by {@link restore}. */
  #held: (() => void)[] = [];
  /** Delay added to every forwarded chunk in each direction, ms (order kept): a slow link. */
  latencyMs = 0;
  /** Connections clients opened through the proxy, refused ones included. */
  connections = 0;
  #dropOn: { readonly encodingId: number; readonly dropped: () => void } | undefined;
  #freezeOn: { readonly encodingId: number; readonly frozen: () => void } | undefined;

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
    this.#blackholed = false;
    this.#serverMuted = false;
    this.#paused = false;
    this.#held = [];
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /**
   * Arms a cut: the next OPC UA message from the server whose body is of binary encoding
   * `encodingId` (e.g. `ObjectIds.CreateSubscriptionResponse_Encoding_DefaultBinary`) is not
   * forwarded; instead every connection is cut as by {@link drop}. Resolves once it happened.
   * Needs security mode None (the body is read in clear).
   */
  dropOnResponse(encodingId: number): Promise<void> {
    return new Promise((resolve) => {
      this.#dropOn = {
        encodingId,
        dropped: () => {
          this.#dropOn = undefined;
          this.drop();
          resolve();
        },
      };
    });
  }

  /**
   * Arms a freeze: when the client sends an OPC UA message whose body is of binary encoding
   * `encodingId` (e.g. `ObjectIds.CreateSubscriptionRequest_Encoding_DefaultBinary`), that message
   * and every byte after it, both directions, open and new connections, are held as by
   * {@link pause} (`"hold"`: {@link restore} delivers them, a TCP path that resumes) or swallowed
   * as by {@link blackhole} (`"swallow"`); with `"mute"` that message and every later one from the
   * client still reach the server but its answers are swallowed, as by {@link muteServer} (a server
   * that stops answering). Nothing is closed. Resolves once it happened. Needs
   * security mode None (the body is read in clear).
   */
  freezeOnRequest(encodingId: number, mode: "hold" | "swallow" | "mute" = "hold"): Promise<void> {
    return new Promise((resolve) => {
      this.#freezeOn = {
        encodingId,
        frozen: () => {
          this.#freezeOn = undefined;
          if (mode === "hold") this.pause();
          else if (mode === "mute") this.muteServer();
          else this.blackhole();
          resolve();
        },
      };
    });
  }

  /**
   * Swallows every byte in both directions, on open connections and on new ones, without
   * closing anything: a link that stalls (a switch dropping frames) rather than breaks.
   * {@link drop} or {@link restore} ends it.
   */
  blackhole(): void {
    this.#blackholed = true;
  }

  /**
   * Swallows every byte in both directions on the connections open now, without closing them,
   * while new connections are forwarded: a NAT or stateful firewall that lost the state of an
   * idle flow. {@link drop} or {@link restore} ends it.
   */
  blackholeOpen(): void {
    for (const socket of this.#sockets) this.#frozen.add(socket);
  }

  /**
   * Holds every byte in both directions, without closing or losing anything: a TCP path that
   * stalls and then resumes (retransmission delivers what was sent meanwhile). {@link restore}
   * delivers what was held, in order; {@link drop} discards it.
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Swallows every message from the server, on open connections and on new ones, while the
   * client's bytes still reach it: the server goes on answering (Publish requests it holds too)
   * and every answer is lost. {@link drop} or {@link restore} ends it.
   */
  muteServer(): void {
    this.#serverMuted = true;
  }

  /** Accepts connections again, forwards again after {@link blackhole} or {@link muteServer}, delivers what {@link pause} held. */
  restore(): void {
    this.#down = false;
    this.#blackholed = false;
    this.#serverMuted = false;
    this.#paused = false;
    this.#frozen.clear();
    const held = this.#held;
    this.#held = [];
    for (const write of held) write();
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Runs `write` after {@link latencyMs} (at once when 0); timers of equal delay keep the order. */
  #later(write: () => void): void {
    if (this.latencyMs > 0) setTimeout(write, this.latencyMs);
    else write();
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
        this.#frozen.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    let sent = Buffer.alloc(0);
    client.on("data", (data: Buffer) => {
      if (this.#blackholed || this.#frozen.has(client)) return;
      // Message by message (whole messages only), so an armed freeze can start at one request.
      sent = Buffer.concat([sent, data]);
      while (sent.length >= 8) {
        const size = sent.readUInt32LE(4);
        if (sent.length < size) return;
        const message = sent.subarray(0, size);
        sent = sent.subarray(size);
        if (this.#freezeOn && isMessageOf(message, this.#freezeOn.encodingId)) this.#freezeOn.frozen();
        if (this.#blackholed) continue;
        if (this.#paused) this.#held.push(() => upstream.write(message));
        else this.#later(() => upstream.write(message));
      }
    });
    let pending = Buffer.alloc(0);
    upstream.on("data", (data: Buffer) => {
      if (this.#blackholed || this.#frozen.has(upstream)) return;
      // Forwarded message by message, so an armed cut can swallow exactly one answer.
      pending = Buffer.concat([pending, data]);
      while (pending.length >= 8) {
        const size = pending.readUInt32LE(4);
        if (pending.length < size) return;
        const message = pending.subarray(0, size);
        pending = pending.subarray(size);
        if (this.#dropOn && isMessageOf(message, this.#dropOn.encodingId)) {
          this.#dropOn.dropped();
          return;
        }
        // Whole messages, so the framing stays intact when forwarding resumes.
        if (this.#serverMuted) continue;
        if (this.#paused) this.#held.push(() => client.write(message));
        else this.#later(() => client.write(message));
      }
    });
  }
}

/**
 * True for an unencrypted MSG chunk (either direction) whose body starts with the four-byte NodeId `encodingId`
 * (header 8 bytes, channel id, token id, sequence number, request id: body at offset 24).
 */
function isMessageOf(message: Buffer, encodingId: number): boolean {
  return (
    message.length >= 28 &&
    message.toString("ascii", 0, 3) === "MSG" &&
    message[24] === 0x01 &&
    message[25] === 0 &&
    message.readUInt16LE(26) === encodingId
  );
}
