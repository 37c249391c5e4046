import type {
  ClientSession,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  DataValue,
  PublishRequest,
  RepublishRequest,
  StatusCode,
  Variant,
} from "node-opcua-client";

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
  ): Promise<{ results?: { statusCode: StatusCode }[] | null }>;
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
