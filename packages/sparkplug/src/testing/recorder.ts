import type { IClientOptions, MqttClient } from "mqtt";
import { KilnError } from "@kiln/core";
import { mqttConnect } from "../mqtt-client";
import { decodePayload } from "../payload";
import { parseSparkplugTopic } from "../topic";
// Types whose home is the main entry, by package name, so the testing entry's declarations
// import them from there (ADR 0027) instead of carrying a second copy.
import type { DecodeOptions, SparkplugPayload, SparkplugTopic } from "@kiln/sparkplug";

/** One message a {@link SparkplugRecorder} saw, in arrival order. */
export interface RecordedMessage {
  /** The MQTT topic. */
  readonly topic: string;
  /** The parsed topic, or undefined when it is not a Sparkplug topic. */
  readonly parsed: SparkplugTopic | undefined;
  /** The QoS the broker delivered it with (the lower of the publisher's and this subscription's, 1). */
  readonly qos: 0 | 1 | 2;
  /** The retain flag as delivered: true for a retained message sent on subscribing. */
  readonly retain: boolean;
  /** The payload as received. */
  readonly bytes: Uint8Array;
  /** The decoded payload (protobuf for N/D messages), or the error decoding it gave. */
  readonly payload: SparkplugPayload | undefined;
  /** Why the payload could not be decoded (a KilnError for a bad Sparkplug payload), else undefined. */
  readonly decodeError: unknown;
  /** The parsed JSON of a STATE message. */
  readonly state: unknown;
}

/** A raw MQTT.js client that records Sparkplug traffic for a test. */
export interface SparkplugRecorder {
  /** The MQTT.js client, to publish with (a STATE, an NCMD, a DCMD...). */
  readonly client: MqttClient;
  /** Every message recorded, in arrival order. */
  readonly messages: readonly RecordedMessage[];
  /** Resolves with the first recorded message (past or future) that matches, else fails after `timeoutMs`. */
  waitFor(predicate: (message: RecordedMessage) => boolean, timeoutMs?: number): Promise<RecordedMessage>;
  /** Forgets what was recorded so far. */
  clear(): void;
  /** Disconnects the client. */
  close(): Promise<void>;
  /** Disconnects the client (`await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Connects a plain MQTT.js client to `url`, subscribes to `filter` (default `spBv1.0/#`) at QoS
 * 1 and records every message, decoding Sparkplug payloads. Use it to observe an edge node or
 * host from the outside, as any MQTT client would.
 *
 * @param options `decode` options for DATA messages; `mqtt` client options (client id, will...).
 */
export async function recordSparkplug(
  url: string,
  options: { readonly filter?: string; readonly decode?: DecodeOptions; readonly mqtt?: IClientOptions } = {},
): Promise<SparkplugRecorder> {
  const client = (await mqttConnect())(url, { reconnectPeriod: 100, ...options.mqtt });
  const messages: RecordedMessage[] = [];
  const waiters = new Set<{
    predicate: (message: RecordedMessage) => boolean;
    resolve: (message: RecordedMessage) => void;
  }>();
  client.on("message", (topic, bytes, packet) => {
    let parsed: SparkplugTopic | undefined;
    try {
      parsed = parseSparkplugTopic(topic);
    } catch {
      parsed = undefined;
    }
    let payload: SparkplugPayload | undefined;
    let decodeError: unknown;
    let state: unknown;
    if (parsed?.type === "STATE") {
      try {
        state = JSON.parse(Buffer.from(bytes).toString("utf8"));
      } catch (error) {
        decodeError = error;
      }
    } else {
      try {
        payload = decodePayload(bytes, options.decode);
      } catch (error) {
        decodeError = error;
      }
    }
    const message: RecordedMessage = {
      topic,
      parsed,
      qos: packet.qos,
      retain: packet.retain,
      bytes,
      payload,
      decodeError,
      state,
    };
    messages.push(message);
    for (const waiter of waiters) {
      if (waiter.predicate(message)) {
        waiters.delete(waiter);
        waiter.resolve(message);
      }
    }
  });
  await client.subscribeAsync(options.filter ?? "spBv1.0/#", { qos: 1 });
  const close = async (): Promise<void> => {
    await client.endAsync(true);
  };
  return {
    client,
    messages,
    waitFor: (predicate, timeoutMs = 10_000) => {
      const seen = messages.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (message: RecordedMessage) => {
            clearTimeout(timer);
            resolve(message);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new KilnError("KILN_TIMEOUT", `no matching MQTT message in ${timeoutMs} ms (${messages.length} recorded)`),
          );
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    clear: () => {
      messages.length = 0;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
