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
  /**
   * The closest Kiln data type, where it maps onto one (OPC UA: a subtype is mapped by its built-in
   * base, `Duration` as float64; DateTime as float64 ms since 1970). Absent where none fits: a tag
   * for it would read bad BadTypeMismatch.
   */
  readonly dataType?: Tag["dataType"];
  /**
   * The device's own name for the variable's data type, for display and for choosing `dataType`
   * where the driver proposed none. OPC UA: the built-in type (`Double`), a standard type
   * (`UtcTime`, `Duration`, an enumeration such as `ServerState`), or a vendor DataType's `nsu=`
   * address; the simulator: the tag's data type. Drivers without type information leave it out.
   */
  readonly nativeType?: string;
  /** Whether the device lets a client write it. */
  readonly access: Tag["access"];
  /**
   * The device's value rank, where it has one (OPC UA Part 3, 5.6.2: -1 scalar, 1 one-dimensional
   * array, n > 1 an n-dimensional array, 0 one or more dimensions, -2 any, -3 scalar or one dimension).
   */
  readonly valueRank?: number;
  /** The length of each array dimension, where the device reports them (0: unknown or variable). */
  readonly arrayDimensions?: readonly number[];
  /**
   * The `arrayLength` to put in the tag definition for a one-dimensional array whose length the
   * device reports (docs/adr/0038-array-tags.md); absent for a scalar or an unknown length.
   */
  readonly arrayLength?: number;
}
