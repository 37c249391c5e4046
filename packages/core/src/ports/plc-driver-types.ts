import type { DriverStatus, KilnErrorCode, Tag } from "@kiln/core";
// Port detail types of a PLC driver: what a driver author names and a host gets by inference.
// Their home is "@kiln/core/driver-kit" (ADR 0027); `PlcDriver` itself is in "@kiln/core".

/** What a driver can do beyond read and write. The core branches on this declaration. */
export interface PlcDriverCapabilities {
  /** The driver can push value changes (`subscribe`). */
  readonly subscribe: boolean;
  /** The driver can list the variables a device exposes (`browse`). */
  readonly browse: boolean;
}

/**
 * Passed to status listeners when a driver's connection state changes, and while `reconnecting`
 * after each failed attempt (`from` and `to` both `reconnecting`, with that attempt's reason and
 * code), so the reason shown is why the link is down now.
 */
export interface DriverStatusChange {
  /** The previous state. */
  readonly from: DriverStatus;
  /** The new state. */
  readonly to: DriverStatus;
  /** Why, in words, where known. */
  readonly reason?: string;
  /** The code of the error behind the change, where one caused it (always set for `failed`). */
  readonly code?: KilnErrorCode;
}

/** How a subscription should sample, from the tag group that asked for it. */
export interface SubscriptionOptions {
  /** Fastest rate at which the device should sample each tag. */
  readonly samplingIntervalMs: number;
  /** How many changes the device may queue per tag between deliveries. @default 1 */
  readonly queueSize?: number;
  /** Absolute deadband applied by the device, where it supports one. */
  readonly deadband?: number;
}

/** A variable found by `PlcDriver.browse`. */
export interface BrowsedVariable {
  /** Display name. */
  readonly name: string;
  /** The driver-specific address to put in a tag definition. */
  readonly address: string;
  /** The closest Kiln data type, where it maps onto one. */
  readonly dataType?: Tag["dataType"];
  /** The device's native data type name. */
  readonly nativeType?: string;
  /** Whether the device lets a client write it. */
  readonly access: Tag["access"];
}
