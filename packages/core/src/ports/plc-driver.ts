import type { Sample } from "../domain/sample";
import type { Tag, TagValue } from "../domain/tags";
import type {
  BrowsedVariable,
  DriverStatusChange,
  PlcDriverCapabilities,
  SubscriptionOptions,
} from "@kiln/core/driver-kit";
import type { Disposer } from "../domain/disposer";
import type { EndpointHealthSnapshot } from "@kiln/core/driver-kit";

/**
 * A driver's connection state.
 *
 * - `disconnected`: not connected and not trying; `connect()` may be called (again).
 * - `connecting` / `reconnecting`: an attempt or a background reconnect loop is under way.
 * - `connected`: the device can be read.
 * - `failed`: stopped after a refusal that retrying cannot fix and that repeating could make
 *   worse: the device refused the identity (`KILN_AUTHENTICATION_FAILED`; a wrong password
 *   retried in a loop can lock the account). Nothing retries by itself; fix the configuration
 *   and call `connect()` again. The change's `code` names the error.
 * - `closed`: `close()` was called.
 */
export type DriverStatus = "disconnected" | "connecting" | "connected" | "reconnecting" | "failed" | "closed";

/**
 * The port every PLC driver implements. The core wraps a driver: it validates tags and
 * values, checks tag access, applies timeouts, retries and a circuit breaker, and only then
 * calls the driver, so a driver receives fully normalised arguments and does no policy of
 * its own beyond its protocol's needs.
 *
 * Contract (checked by `plcDriverConformance` in `@kiln/core/testing`):
 * - `read(tags)` returns exactly one sample per tag, in the order given, in one round trip
 *   where the protocol allows. A tag the device cannot read comes back with quality `bad`;
 *   a failure of the whole call (connection lost) rejects with a retryable `KilnError`.
 * - The same `tags` array instance is passed for the same scan group on every cycle, so a
 *   driver may cache per-array work (read plans, resolved node ids), but only while the array
 *   still holds the same tags (a direct caller may change it in place: use the driver kit's
 *   `TagListCache`), and the samples of a read name the tags the array held when `read` was
 *   called, whatever the caller does to it meanwhile (copy it before the first await). The
 *   conformance suite checks both.
 * - `write` of a tag whose access is `read` rejects with `KILN_TAG_NOT_WRITABLE` before any
 *   network traffic; a device refusal rejects with `KILN_WRITE_REJECTED`.
 * - Calls before `connect()` or after `close()` reject with `KILN_NOT_CONNECTED`.
 * - `read`, `write`, `subscribe` and `browse` never settle before the event loop has turned once since the call, also
 *   when they answer without I/O (not connected, reconnecting, a unit offline): a caller retrying
 *   in a tight loop must not starve timers and sockets, the driver's own reconnect timer included
 *   (issue 12). Wrap the call in the driver kit's `afterEventLoopTurn`.
 */
export interface PlcDriver {
  /** The driver contract version this driver implements. */
  readonly driverApiVersion: "1";
  /** A name for this connection, unique in the system ("opcua:reactor-1"); used in events and breakers. */
  readonly name: string;
  /** Optional features this driver provides. */
  readonly capabilities: PlcDriverCapabilities;
  /** The current connection state. */
  readonly status: DriverStatus;
  /** Calls `listener` on every connection state change; returns a disposer. */
  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer;
  /**
   * Opens the connection. Resolves when the device can be read. Rejects with
   * `KILN_CONNECTION_FAILED` (retryable) or `KILN_AUTHENTICATION_FAILED` (not retryable).
   */
  connect(signal?: AbortSignal): Promise<void>;
  /** Closes the connection and releases every resource. Idempotent. */
  close(): Promise<void>;
  /** Reads `tags` and returns one sample per tag, in order. */
  read(tags: readonly Tag[], signal?: AbortSignal): Promise<Sample[]>;
  /**
   * Writes `value` (already checked against the tag's type and range) to `tag`. Resolves once the
   * device took it.
   *
   * On failure, say whether the request may have reached the device: reject with a `KilnError`
   * whose `details.sent` is `false` when nothing was sent (queued, not connected, refused before
   * the wire), `true` when the request may be on the wire or at the device (aborted or timed out
   * after sending). The core reads it (review 15g, ADR 0042): `sent: true`, or a `KILN_TIMEOUT` /
   * `KILN_ABORTED` without `sent: false`, is "may have landed": the tag's later writes are held
   * behind it, the tag's latest value is written again after it, and the audit records it
   * `<id>:landed` (unconfirmed), never `<id>:lost`. Any other rejection (a device exception,
   * `KILN_WRITE_REJECTED`) means the device did not take the value.
   */
  write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void>;
  /**
   * Present when `capabilities.subscribe`: delivers value changes of `tags` to `onSamples`
   * until the returned disposer is called. Subscriptions are the core's desired state: it calls
   * the disposer when the link goes offline and subscribes again once it is back, so a driver
   * that repairs its session by itself must not revive a subscription whose disposer was called
   * (and may keep live ones alive across a transparent session repair).
   */
  subscribe?(
    tags: readonly Tag[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
  ): Promise<Disposer>;
  /** Present when `capabilities.browse`: lists the variables under `root` (driver-specific). */
  browse?(root?: string): Promise<BrowsedVariable[]>;
  /**
   * Optional, for a driver that reaches several endpoints through one connection (units behind a
   * Modbus gateway, devices on a bus): the health of each, as kept by the driver kit's
   * `EndpointHealth` (`snapshot()`). The core shows it in `health().acquisition.endpoints` and
   * reports the system `degraded`, naming the endpoint, while one is `offline`. Must be cheap and
   * must not throw.
   */
  endpoints?(): readonly EndpointHealthSnapshot[];
}
