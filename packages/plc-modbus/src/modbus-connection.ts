import { KilnError, type Clock } from "@kiln/core";
import { abortError, raceAbort } from "@kiln/core/driver-kit";
import type { ModbusClient } from "./modbus-client";
import type { ResolvedModbusDriverOptions } from "./modbus-driver-options";

/** What {@link openModbusClient} needs. */
export interface ModbusConnectionOptions {
  /** Where to connect. */
  readonly transport: ResolvedModbusDriverOptions["transport"];
  /** Creates the modbus-serial client. */
  readonly clientFactory: () => ModbusClient;
  /** Source of time for the connect timeout. */
  readonly clock: Clock;
  /** Opening fails after this long, in ms. */
  readonly connectTimeoutMs: number;
  /** The driver's name, for `details.driver`. */
  readonly driver: string;
  /** Called when the open client closes or errors, with the reason in words. */
  readonly onLost: (client: ModbusClient, reason: string) => void;
}

/** The transport's target in words: `host:port` or the serial path. */
export function modbusTarget(transport: ResolvedModbusDriverOptions["transport"]): string {
  return transport.kind === "tcp" ? `${transport.host}:${transport.port}` : transport.path;
}

/**
 * Opens a Modbus TCP or RTU client, wired to report its loss through `onLost`.
 *
 * @throws KilnError `KILN_CONNECTION_FAILED` (retryable) when the device cannot be reached or does
 *   not answer within `connectTimeoutMs`; `KILN_NOT_SUPPORTED` for RTU when serial support does not load;
 *   `KILN_ABORTED` (or the signal's `KilnError` reason) when `signal` aborts first.
 */
export async function openModbusClient(options: ModbusConnectionOptions, signal: AbortSignal): Promise<ModbusClient> {
  const { transport, clock, connectTimeoutMs } = options;
  const client = options.clientFactory();
  client.on("close", () => options.onLost(client, "the device closed the connection"));
  client.on("error", (error) =>
    options.onLost(client, `transport error: ${error instanceof Error ? error.message : String(error)}`),
  );
  const opening =
    transport.kind === "tcp"
      ? client.connectTCP(transport.host, { port: transport.port })
      : client.connectRTUBuffered(transport.path, {
          baudRate: transport.baudRate,
          dataBits: transport.dataBits,
          stopBits: transport.stopBits,
          parity: transport.parity,
        });
  const deadline = new AbortController();
  const timer = clock.setTimeout(
    () => deadline.abort(connectFailed(options, `no answer within ${connectTimeoutMs} ms`)),
    connectTimeoutMs,
  );
  try {
    await raceAbort(opening, AbortSignal.any([signal, deadline.signal]), "opening the Modbus connection");
  } catch (error) {
    void destroyClient(client);
    if (KilnError.is(error)) throw error;
    throw connectFailed(options, error instanceof Error ? error.message : String(error), error);
  } finally {
    clock.clearTimeout(timer);
  }
  if (signal.aborted) {
    void destroyClient(client);
    throw abortError(signal, "opening the Modbus connection");
  }
  watchTransport(client, options);
  return client;
}

/**
 * Listens on the socket or serial port under modbus-serial's client: when a connection is reset,
 * modbus-serial marks its port closed on the `error` and then swallows the `close`, so the request in
 * flight would wait for its timeout. The transport's own events report the loss at once.
 */
function watchTransport(client: ModbusClient, options: ModbusConnectionOptions): void {
  const transport = (client as { _port?: { _client?: unknown } })._port?._client;
  if (!isEmitter(transport)) return;
  transport.once("close", () => options.onLost(client, "the connection closed"));
  transport.on("error", (error: unknown) =>
    options.onLost(client, `transport error: ${error instanceof Error ? error.message : String(error)}`),
  );
}

function isEmitter(value: unknown): value is { once: EmitterMethod; on: EmitterMethod } {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { once?: unknown }).once === "function" &&
    typeof (value as { on?: unknown }).on === "function"
  );
}

type EmitterMethod = (event: string, listener: (...args: unknown[]) => void) => unknown;

function connectFailed(options: ModbusConnectionOptions, reason: string, cause?: unknown): KilnError {
  const target = modbusTarget(options.transport);
  return new KilnError(
    "KILN_CONNECTION_FAILED",
    `Could not open Modbus ${options.transport.kind.toUpperCase()} connection to ${target}: ${reason}. ` +
      "Check the address, port and that the device accepts another client.",
    { retryable: true, cause, details: { driver: options.driver, target } },
  );
}

/** Closes `client`; resolves when it is closed, never rejects. */
export function destroyClient(client: ModbusClient): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      client.destroy(() => resolve());
    } catch {
      resolve();
    }
  });
}
