import {
  AttributeIds,
  type ClientSession,
  constructEventFilter,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  type DataValue,
  MonitoringMode,
  type PublishRequest,
  type RepublishRequest,
  type StatusCode,
  StatusCodes,
  TimestampsToReturn,
  type Variant,
} from "node-opcua-client";
import { expect } from "vitest";

/** A NotificationMessage as a raw Publish or Republish answers it: value changes and events. */
export interface RawNotificationMessage {
  readonly sequenceNumber: number;
  readonly notificationData?:
    | ({
        readonly monitoredItems?: readonly { readonly clientHandle: number; readonly value: DataValue }[] | null;
        readonly events?: readonly { readonly eventFields?: readonly Variant[] | null }[] | null;
      } | null)[]
    | null;
}

/**
 * The raw subscription services node-opcua's ClientSession has but does not type: the tests call
 * them as a SCADA's own stack would (no client-side publish loop, sequence numbers by hand).
 */
export interface RawSession {
  createSubscription(request: CreateSubscriptionRequest): Promise<{ subscriptionId: number }>;
  createMonitoredItems(
    request: CreateMonitoredItemsRequest,
  ): Promise<{ results?: { statusCode: StatusCode; monitoredItemId: number }[] | null }>;
  transferSubscriptions(request: {
    subscriptionIds: number[];
    sendInitialValues: boolean;
  }): Promise<{ results?: { statusCode: StatusCode; availableSequenceNumbers?: number[] | null }[] | null }>;
  publish(
    request: PublishRequest,
  ): Promise<{ subscriptionId: number; moreNotifications?: boolean; notificationMessage: RawNotificationMessage }>;
  republish(request: RepublishRequest): Promise<{ notificationMessage: RawNotificationMessage }>;
}

/** The session's raw services ({@link RawSession}). */
export function rawSession(session: ClientSession): RawSession {
  return session as unknown as RawSession;
}

/**
 * A raw subscription (publishing every 50 ms) with one event item on the Server object
 * (ns=0;i=2253) selecting `fields`, queue 100; asserts the item was created. Its ids.
 */
export async function rawEventSubscription(
  session: ClientSession,
  fields: readonly string[],
  maxKeepAliveCount: number,
): Promise<{ subscriptionId: number; itemId: number }> {
  const { subscriptionId } = await rawSession(session).createSubscription(
    new CreateSubscriptionRequest({
      requestedPublishingInterval: 50,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: maxKeepAliveCount,
      publishingEnabled: true,
    }),
  );
  const created = await rawSession(session).createMonitoredItems(
    new CreateMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Neither,
      itemsToCreate: [
        {
          itemToMonitor: { nodeId: "ns=0;i=2253", attributeId: AttributeIds.EventNotifier },
          monitoringMode: MonitoringMode.Reporting,
          requestedParameters: {
            clientHandle: 1,
            samplingInterval: 0,
            queueSize: 100,
            discardOldest: true,
            filter: constructEventFilter([...fields]),
          },
        },
      ],
    }),
  );
  expect(created.results?.[0]?.statusCode).toBe(StatusCodes.Good);
  return { subscriptionId, itemId: created.results![0]!.monitoredItemId };
}

/** What the server answered a raw connection: its Acknowledge limits, and the ERR it closed with (if any). */
export interface RawTransportAnswer {
  /** The MaxMessageSize the server's Acknowledge stated. */
  readonly maxMessageSize: number;
  /** The MaxChunkCount the server's Acknowledge stated. */
  readonly maxChunkCount: number;
  /** The StatusCode value of the ERR message the server sent before closing, if it sent one. */
  readonly error?: number;
}

/**
 * Speaks OPC UA TCP by hand (OPC UA Part 6, 7.1): Hello stating no message size limit (0),
 * OpenSecureChannel with SecurityPolicy None (no session), then one MSG of `bodyBytes` zero
 * bytes in 64 KiB chunks, as an attacker's client would: node-opcua's own client refuses to send
 * more than the server acknowledged. Resolves once the server has closed the connection, or
 * `settleMs` after the last chunk when it has not.
 */
export async function sendRawMessage(port: number, bodyBytes: number, settleMs = 1_000): Promise<RawTransportAnswer> {
  const { connect: connectTcp } = await import("node:net");
  const socket = connectTcp({ host: "127.0.0.1", port });
  const received: Buffer[] = [];
  let waiter: (() => void) | undefined;
  let closed = false;
  socket.on("data", (data: Buffer) => {
    received.push(data);
    waiter?.();
  });
  socket.on("error", () => undefined);
  socket.on("close", () => {
    closed = true;
    waiter?.();
  });
  const buffered = (): Buffer => Buffer.concat(received);
  /** Waits for a whole message (8-byte header with its size) at `offset`; its bytes. */
  const message = async (offset: number): Promise<Buffer> => {
    for (;;) {
      const data = buffered();
      if (data.length >= offset + 8 && data.length >= offset + data.readUInt32LE(offset + 4)) {
        return data.subarray(offset, offset + data.readUInt32LE(offset + 4));
      }
      if (closed) throw new Error(`connection closed after ${data.length} bytes`);
      await new Promise<void>((resolve) => (waiter = resolve));
    }
  };
  const frame = (type: string, body: Buffer): Buffer => {
    const header = Buffer.alloc(8);
    header.write(type, 0, "latin1");
    header.writeUInt32LE(8 + body.length, 4);
    return Buffer.concat([header, body]);
  };
  const u32 = (...values: number[]): Buffer => {
    const buffer = Buffer.alloc(4 * values.length);
    values.forEach((value, index) => buffer.writeUInt32LE(value >>> 0, 4 * index));
    return buffer;
  };
  const text = (value: string): Buffer => Buffer.concat([u32(Buffer.byteLength(value)), Buffer.from(value)]);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const chunkSize = 65_536;
  socket.write(frame("HELF", Buffer.concat([u32(0, chunkSize, chunkSize, 0, 0), text(`opc.tcp://127.0.0.1:${port}`)])));
  const ack = await message(0);
  const maxMessageSize = ack.readUInt32LE(20);
  const maxChunkCount = ack.readUInt32LE(24);
  const none = "http://opcfoundation.org/UA/SecurityPolicy#None";
  const requestHeader = Buffer.concat([
    Buffer.from([0, 0]), // authenticationToken: null NodeId
    Buffer.alloc(8), // timestamp
    u32(1, 0, 0xffffffff, 10_000), // requestHandle, returnDiagnostics, auditEntryId null, timeoutHint
    Buffer.from([0, 0, 0]), // additionalHeader: no ExtensionObject
  ]);
  socket.write(
    frame(
      "OPNF",
      Buffer.concat([
        u32(0),
        text(none),
        u32(0xffffffff, 0xffffffff, 1, 1), // no certificate, no thumbprint; sequence number, request id
        Buffer.from([1, 0]), // NodeId OpenSecureChannelRequest_Encoding_DefaultBinary (446)
        Buffer.from([446 & 0xff, 446 >> 8]),
        requestHeader,
        u32(0, 0, 1, 0xffffffff, 600_000), // protocol version, Issue, None, no nonce, lifetime
      ]),
    ),
  );
  const opened = await message(ack.length);
  if (opened.subarray(0, 3).toString("latin1") !== "OPN") {
    throw new Error(`OpenSecureChannel refused: ${opened.subarray(0, 4).toString("latin1")} ${opened.readUInt32LE(8)}`);
  }
  const channelId = opened.readUInt32LE(8);
  let at = 12 + 4 + opened.readUInt32LE(12) + 8 + 8 + 4; // policy, cert, thumbprint, sequence header, NodeId
  at += 8 + 4 + 4 + 1; // ResponseHeader: timestamp, handle, serviceResult, empty DiagnosticInfo
  const strings = opened.readInt32LE(at);
  at += 4;
  for (let index = 0; index < strings; index += 1) at += 4 + Math.max(0, opened.readInt32LE(at));
  at += 3 + 4 + 4; // no additional header; server protocol version; token's channel id
  const tokenId = opened.readUInt32LE(at);
  const chunks = Math.ceil(bodyBytes / (chunkSize - 24));
  for (let index = 0; index < chunks && !closed; index += 1) {
    const body = Buffer.alloc(Math.min(chunkSize - 24, bodyBytes - index * (chunkSize - 24)));
    const chunk = frame(
      index === chunks - 1 ? "MSGF" : "MSGC",
      Buffer.concat([u32(channelId, tokenId, 2 + index, 2), body]),
    );
    await new Promise<void>((resolve) => socket.write(chunk, () => resolve()));
  }
  const deadline = Date.now() + settleMs;
  while (!closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  socket.destroy();
  const data = buffered();
  const errorAt = data.indexOf("ERRF", ack.length + opened.length, "latin1");
  return { maxMessageSize, maxChunkCount, ...(errorAt < 0 ? {} : { error: data.readUInt32LE(errorAt + 8) }) };
}
