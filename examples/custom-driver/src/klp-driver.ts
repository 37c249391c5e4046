import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { z } from "zod";
import {
  type Clock,
  type DriverStatus,
  GOOD,
  KilnError,
  KilnValidationError,
  type PlcDriver,
  type Quality,
  quality,
  QualityCodes,
  type Sample,
  SystemClock,
  type Tag,
  type TagValue,
  type ValidationIssue,
} from "@kiln/core";
import {
  abortError,
  afterEventLoopTurn,
  ConnectionLifecycle,
  type Disposer,
  type DriverStatusChange,
  issuesFromZod,
  parseOrThrow,
  raceAbort,
} from "@kiln/core/driver-kit";
import { KlpErrorCodes, decodeKlpValue, encodeKlpValue, klpAddressSchema } from "./klp-protocol";

/** Options of {@link KlpDriver}. */
export interface KlpDriverOptions {
  /** TCP port of the KLP device. */
  readonly port: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** Connection name used in events and breakers. @default "klp:<host>:<port>" */
  readonly name?: string;
  /** Source of sample timestamps (KLP has no source timestamps). @default new SystemClock() */
  readonly clock?: Clock;
}

const optionsSchema = z.object({
  port: z.number().int().min(1).max(65535),
  host: z.string().min(1).default("127.0.0.1"),
  name: z.string().min(1).optional(),
  clock: z.custom<Clock>((value) => typeof (value as Clock | undefined)?.now === "function").optional(),
});

const BAD_UNKNOWN_ADDRESS = quality("bad", "unknown KLP address", QualityCodes.BadNodeIdUnknown);
const BAD_TYPE_MISMATCH = quality("bad", "KLP value does not fit the tag's data type", QualityCodes.BadTypeMismatch);

/** A request on the wire; its reply is the next line the device sends. */
interface PendingRequest {
  readonly resolve: (line: string) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * A `PlcDriver` for the Kiln Line Protocol: newline-delimited text over TCP. Reads all the
 * tags of a call in one `READ` line; the address of each tag is its definition's `address`.
 *
 * @example
 * const driver = new KlpDriver({ port: 7878 });
 * const system = createControlSystem({ machineId: "oven-1", tags, driver });
 * @throws KilnValidationError naming each bad option.
 */
export class KlpDriver implements PlcDriver {
  readonly driverApiVersion = "1" as const;
  readonly name: string;
  readonly capabilities = { subscribe: false, browse: false } as const;
  readonly #host: string;
  readonly #port: number;
  readonly #clock: Clock;
  readonly #lifecycle: ConnectionLifecycle;
  readonly #readRequests = new WeakMap<readonly Tag[], string>();
  readonly #pending: PendingRequest[] = [];
  #socket: Socket | undefined;

  constructor(options: KlpDriverOptions) {
    const { host, port, name, clock } = parseOrThrow(optionsSchema, options, "KLP driver options");
    this.#host = host;
    this.#port = port;
    this.name = name ?? `klp:${host}:${port}`;
    this.#clock = clock ?? new SystemClock();
    this.#lifecycle = new ConnectionLifecycle({ name: this.name, clock: this.#clock });
  }

  get status(): DriverStatus {
    return this.#lifecycle.status;
  }

  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer {
    return this.#lifecycle.onStatusChange(listener);
  }

  /** Concurrent calls share one attempt; `close()` during it wins. */
  connect(signal?: AbortSignal): Promise<void> {
    return this.#lifecycle.connect((lifetime) => this.#open(lifetime), signal);
  }

  close(): Promise<void> {
    return this.#lifecycle.close(async () => {
      this.#socket?.destroy();
    });
  }

  read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    // Refused without I/O (not connected), a call must still let the event loop turn, or a caller
    // retrying in a tight loop starves every timer and socket (the conformance suite checks).
    return afterEventLoopTurn(this.#read(requested, signal));
  }

  async #read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    // The tags as asked: the caller may change its array while the read awaits (the conformance suite checks).
    const tags = requested.slice();
    const request = this.#readRequestOf(tags);
    this.#assertConnected();
    if (tags.length === 0) return [];
    const reply = await this.#request(request, signal);
    const [status, ...items] = reply.split(" ");
    if (status !== "OK") {
      throw new KilnError("KILN_DEVICE_ERROR", `KLP device refused the read: ${reply}`, { details: { reply } });
    }
    const timestamp = this.#clock.now();
    return tags.map((tag, index) => sampleOf(tag, items[index], timestamp));
  }

  write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    return afterEventLoopTurn(this.#write(tag, value, signal));
  }

  async #write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    if (tag.access !== "readwrite") {
      throw new KilnError("KILN_TAG_NOT_WRITABLE", `Tag "${tag.name}" is read-only.`, { details: { tag: tag.name } });
    }
    const [address] = klpAddressesOf([tag]);
    this.#assertConnected();
    // The driver contract: a failure says whether the request may have reached the device. Once the
    // line is written it may have been applied (aborted, connection lost before the reply): the core
    // then holds the tag's later writes behind it and audits it unconfirmed, never "not taken".
    const sent = signal?.aborted !== true;
    let reply: string;
    try {
      reply = await this.#request(`WRITE ${address} ${encodeKlpValue(value)}`, signal);
    } catch (error) {
      if (!KilnError.is(error)) throw error;
      throw new KilnError(error.code, error.message, {
        cause: error.cause ?? error,
        retryable: sent ? false : error.retryable,
        details: { ...error.details, sent },
      });
    }
    if (reply !== "OK") {
      throw new KilnError("KILN_WRITE_REJECTED", `KLP device refused the write of "${tag.name}": ${reply}`, {
        details: { tag: tag.name, klpCode: Number(reply.split(" ")[1]) },
      });
    }
  }

  /** The scan group passes the same array every cycle, so the request line is built once per array. */
  #readRequestOf(tags: readonly Tag[]): string {
    let request = this.#readRequests.get(tags);
    if (request === undefined) {
      request = ["READ", ...klpAddressesOf(tags)].join(" ");
      this.#readRequests.set(tags, request);
    }
    return request;
  }

  async #open(signal: AbortSignal): Promise<void> {
    const socket = connect({ host: this.#host, port: this.#port, noDelay: true }); // small request lines: no Nagle delay
    try {
      await once(socket, "connect", { signal });
    } catch (error) {
      socket.destroy();
      if (signal.aborted) throw abortError(signal, "connecting");
      throw new KilnError("KILN_CONNECTION_FAILED", `No KLP device at ${this.#host}:${this.#port}.`, {
        retryable: true,
        cause: error,
      });
    }
    socket.on("error", () => undefined); // always followed by "close", handled below
    socket.on("close", () => this.#lost(socket));
    createInterface({ input: socket }).on("line", (line) => this.#pending.shift()?.resolve(line));
    this.#socket = socket;
  }

  #request(line: string, signal?: AbortSignal): Promise<string> {
    if (signal?.aborted) return Promise.reject(abortError(signal, "the request"));
    const reply = new Promise<string>((resolve, reject) => {
      // An aborted request stays queued: its reply still comes, and must not be taken for the next one's.
      this.#pending.push({ resolve, reject });
      this.#socket!.write(`${line}\n`);
    });
    return raceAbort(reply, signal, "the request");
  }

  #lost(socket: Socket): void {
    if (this.#socket !== socket) return;
    this.#socket = undefined;
    if (this.status === "connected") this.#lifecycle.setStatus("disconnected", "the device closed the connection");
    const error = this.#notConnected();
    for (const request of this.#pending.splice(0)) request.reject(error);
  }

  #assertConnected(): void {
    if (this.status !== "connected" || !this.#socket) throw this.#notConnected();
  }

  #notConnected(): KilnError {
    return this.#lifecycle.notConnected(`KLP driver "${this.name}" is ${this.status}.`);
  }
}

/**
 * The KLP address of each tag, in order.
 * @throws KilnValidationError naming `<tag>.address` for every tag whose address is missing or invalid.
 */
export function klpAddressesOf(tags: readonly Tag[]): string[] {
  const issues: ValidationIssue[] = [];
  const addresses = tags.map((tag) => {
    const result = klpAddressSchema.safeParse(tag.address);
    if (!result.success) issues.push(...issuesFromZod(result.error, [tag.name, "address"]));
    return result.data ?? "";
  });
  if (issues.length > 0) throw new KilnValidationError("KLP tag addresses", issues);
  return addresses;
}

function sampleOf(tag: Tag, item: string | undefined, timestamp: number): Sample {
  const value = item === undefined || item.startsWith("ERR:") ? undefined : decodeKlpValue(item, tag.dataType);
  if (value !== undefined) return { tag: tag.name, value, timestamp, quality: GOOD };
  return { tag: tag.name, value: null, timestamp, quality: badQualityOf(item) };
}

/** Why a read item gave no value: an unknown address, another KLP error, or a token that does not fit the type. */
function badQualityOf(item: string | undefined): Quality {
  if (item === `ERR:${KlpErrorCodes.UnknownAddress}`) return BAD_UNKNOWN_ADDRESS;
  if (item === undefined || item.startsWith("ERR:")) {
    return quality("bad", `KLP read item ${item ?? "missing"}`, QualityCodes.BadDeviceFailure);
  }
  return BAD_TYPE_MISMATCH;
}
