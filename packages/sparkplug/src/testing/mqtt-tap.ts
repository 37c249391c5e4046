import { createServer, connect, type Server, type Socket } from "node:net";
import mqttPacket, { type Packet } from "mqtt-packet";
import { KilnError } from "@kiln/core";
import { freePort } from "./brokers";

/** One MQTT control packet a client sent through a {@link MqttTap}, parsed. */
export interface TappedPacket {
  /** Which client connection (1, 2, ... in accept order) sent it. */
  readonly connection: number;
  /** The packet, as mqtt-packet parses it. */
  readonly packet: Packet;
}

/**
 * A TCP proxy between MQTT clients and a broker on loopback that parses every packet the clients
 * send (CONNECT with its Will, SUBSCRIBE with its QoS, PUBLISH...) and can cut the network
 * (every connection dropped, with no DISCONNECT: the broker publishes the Wills), hold it down,
 * or stall it (connections stay open and nothing passes: a broker that stopped answering).
 */
export interface MqttTap {
  /** `mqtt://127.0.0.1:<port>`: give this to the client under test instead of the broker's URL. */
  readonly url: string;
  /** Packets the clients sent, in order. */
  readonly packets: readonly TappedPacket[];
  /** Drops every open connection at once (both sides' sockets destroyed). */
  cut(): void;
  /** While true, new connections are accepted and dropped at once (a network that is down). */
  refuse: boolean;
  /**
   * Stops forwarding, both ways, on every connection (open and new) while they stay open, as a
   * broker that stopped answering (SIGSTOP) or a network that silently drops: what is sent waits
   * in the sockets' buffers until {@link MqttTap.resume}.
   */
  stall(): void;
  /** Forwards again after {@link MqttTap.stall}, what waited first. */
  resume(): void;
  /** Resolves with the first packet (past or future) that matches, else fails after `timeoutMs`. */
  waitFor(predicate: (packet: TappedPacket) => boolean, timeoutMs?: number): Promise<TappedPacket>;
  /** Drops every connection and stops listening. */
  close(): Promise<void>;
  /** Drops every connection and stops listening (`await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a {@link MqttTap} in front of the broker on `brokerPort` (127.0.0.1).
 * @param options `protocolVersion` of the clients (4 for MQTT 3.1.1, 5) for the parser. @default 4
 */
export async function startMqttTap(
  brokerPort: number,
  options: { readonly protocolVersion?: 4 | 5 } = {},
): Promise<MqttTap> {
  const port = await freePort();
  const packets: TappedPacket[] = [];
  const pairs = new Set<{ client: Socket; broker: Socket }>();
  const waiters = new Set<{ predicate: (packet: TappedPacket) => boolean; resolve: (packet: TappedPacket) => void }>();
  let connections = 0;
  let stalled = false;
  const tap: MqttTap = {
    url: `mqtt://127.0.0.1:${port}`,
    packets,
    refuse: false,
    cut: () => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.broker.destroy();
      }
      pairs.clear();
    },
    stall: () => {
      stalled = true;
      for (const pair of pairs) {
        pair.client.pause();
        pair.broker.pause();
      }
    },
    resume: () => {
      stalled = false;
      for (const pair of pairs) {
        pair.client.resume();
        pair.broker.resume();
      }
    },
    waitFor: (predicate, timeoutMs = 10_000) => {
      const seen = packets.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (packet: TappedPacket) => {
            clearTimeout(timer);
            resolve(packet);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new KilnError("KILN_TIMEOUT", `no matching MQTT packet in ${timeoutMs} ms (${packets.length} tapped)`),
          );
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close: async () => {
      tap.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    [Symbol.asyncDispose]: () => tap.close(),
  };
  const server: Server = createServer((client) => {
    if (tap.refuse) {
      client.destroy();
      return;
    }
    const connection = ++connections;
    const broker = connect(brokerPort, "127.0.0.1");
    const pair = { client, broker };
    pairs.add(pair);
    if (stalled) {
      client.pause();
      broker.pause();
    }
    const parser = mqttPacket.parser({ protocolVersion: options.protocolVersion ?? 4 });
    parser.on("packet", (packet: Packet) => {
      const tapped = { connection, packet };
      packets.push(tapped);
      for (const waiter of waiters) {
        if (waiter.predicate(tapped)) {
          waiters.delete(waiter);
          waiter.resolve(tapped);
        }
      }
    });
    parser.on("error", () => undefined);
    client.on("data", (chunk: Buffer) => {
      parser.parse(chunk);
      broker.write(chunk);
    });
    broker.on("data", (chunk: Buffer) => client.write(chunk));
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      broker.destroy();
    };
    client.on("close", drop);
    broker.on("close", drop);
    client.on("error", drop);
    broker.on("error", drop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return tap;
}
