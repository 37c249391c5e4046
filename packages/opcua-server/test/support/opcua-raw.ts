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
  ): Promise<{ moreNotifications?: boolean; notificationMessage: RawNotificationMessage }>;
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
