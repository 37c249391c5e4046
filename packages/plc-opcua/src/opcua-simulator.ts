import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Clock, KilnError, type SignalSpec, SystemClock, type Tag, TagCatalog, type TagValue } from "@kiln/core";
import {
  createSignal,
  endpointUrlHost,
  parseOrThrow,
  type Signal,
  signalSpecSchema,
  type TagScalarValue,
} from "@kiln/core/driver-kit";
import { type TimerHandle } from "@kiln/core";
import type { UAFolder, UAVariable } from "node-opcua-address-space";
import type { OPCUACertificateManager } from "node-opcua-certificate-manager";
import type { DataValue, NodeId } from "node-opcua-client";
import type { OPCUAServer } from "node-opcua-server";
import { z } from "zod";
import { loadOpcuaSimulatorRuntime, type OpcuaSimulatorRuntime } from "./opcua-runtime-loader";

/** The namespace URI the simulator's variables live in, unless told otherwise. */
export const OPCUA_SIMULATOR_NAMESPACE_URI = "urn:kiln:opcua-simulator";

const limit = z.number().int().positive().optional();

/** zod schema of {@link OpcuaSimulatorOptions} (the tag list and clock are checked separately). */
export const opcuaSimulatorOptionsSchema = z
  .object({
    tags: z.custom<TagCatalog | readonly Tag[]>(
      (value) => value instanceof TagCatalog || Array.isArray(value),
      "must be a TagCatalog (from defineTags) or an array of tags",
    ),
    signals: z.record(z.string(), signalSpecSchema).default({}),
    host: z.string().min(1).default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(0),
    namespaceUri: z.string().min(1).default(OPCUA_SIMULATOR_NAMESPACE_URI),
    folderName: z.string().min(1).default("Kiln"),
    extraNamespaces: z.array(z.string().min(1)).default([]),
    users: z.array(z.object({ userName: z.string().min(1), password: z.string().min(1) }).strict()).default([]),
    allowAnonymous: z.boolean().default(true),
    securityModes: z
      .array(z.enum(["None", "Sign", "SignAndEncrypt"]))
      .min(1)
      .default(["None", "Sign", "SignAndEncrypt"]),
    operationLimits: z
      .object({
        maxNodesPerRead: limit,
        maxNodesPerWrite: limit,
        maxNodesPerBrowse: limit,
        maxMonitoredItemsPerCall: limit,
      })
      .strict()
      .prefault({}),
    maxSubscriptionsPerSession: z.number().int().min(0).default(10),
    updateIntervalMs: z.number().int().positive().default(100),
    pkiDir: z.string().min(1).optional(),
    clock: z
      .custom<Clock>(
        (value) => typeof value === "object" && value !== null && typeof (value as Clock).now === "function",
        "must be a Clock",
      )
      .optional(),
  })
  .strict();

/**
 * Options of {@link OpcuaSimulator}.
 *
 * - `tags`: the tags to expose, one variable each, with string NodeIds under one folder: the
 *   string identifier of the tag's `address` when it has one (`ns=2;s=Reactor.Pressure` gives
 *   `Reactor.Pressure`), else the tag name.
 * - `signals`: how each tag's value evolves (`SignalSpec`, as `SimulatedPlc` uses). Tags without
 *   a signal hold their value (0, false or "" until written).
 * - `host`, `port`: where to listen. @default "127.0.0.1", 0 (a free port, kept across restarts)
 * - `namespaceUri`, `folderName`: where the variables live. @default "urn:kiln:opcua-simulator", "Kiln"
 * - `extraNamespaces`: namespaces registered before the simulator's own, to mimic a server whose
 *   namespace indexes differ (the simulator's namespace index is then 2 + their count).
 * - `users`: accepted user names and passwords. `allowAnonymous` @default true
 * - `securityModes`: endpoints offered (policies Basic256Sha256, Aes128_Sha256_RsaOaep and
 *   Aes256_Sha256_RsaPss for the secure ones). @default all three modes
 * - `operationLimits`: MaxNodesPerRead and friends the server advertises and enforces.
 * - `maxSubscriptionsPerSession`: subscriptions a session may hold; one more is refused with
 *   BadTooManySubscriptions, as small PLCs (2–10 slots) do. Changed while running with
 *   {@link OpcuaSimulator.setMaxSubscriptionsPerSession}. @default 10
 * - `updateIntervalMs`: how often signals are evaluated. @default 100
 * - `pkiDir`: the server's PKI (its certificate; client certificates are accepted
 *   automatically). @default a fresh temporary folder per instance, removed by `dispose()`
 * - `clock`: time for signals and timestamps. @default SystemClock
 */
export type OpcuaSimulatorOptions = z.input<typeof opcuaSimulatorOptionsSchema>;

/** What the simulator has served since it was created or {@link OpcuaSimulator.resetStats}. */
export interface OpcuaSimulatorStats {
  /** ReadRequests that read at least one simulated tag. */
  readonly readRequests: number;
  /** Simulated tag values read, over all ReadRequests. */
  readonly readNodes: number;
  /** WriteRequests that wrote at least one simulated tag. */
  readonly writeRequests: number;
  /** CreateMonitoredItemsRequests that monitor at least one simulated tag. */
  readonly createMonitoredItemsRequests: number;
  /** ActivateSessionRequests (each a log-in attempt), whatever their outcome. */
  readonly activateSessionRequests: number;
  /** User name and password checks, whatever their outcome: the log-in attempts an account lockout would count. */
  readonly passwordChecks: number;
}

interface SimulatedTag {
  readonly tag: Tag;
  readonly identifier: string;
  readonly signal: Signal | undefined;
  value: TagValue;
  /** Written by a client or the host: the signal no longer drives it. */
  held: boolean;
  hidden: boolean;
  variable: UAVariable | undefined;
}

/**
 * A real OPC UA server (node-opcua) that exposes a Kiln tag list, for examples, tests and
 * benchmarks: one variable per tag with a string NodeId under one folder, values driven by the
 * same signal generators as `SimulatedPlc`, writable tags accepting client writes (read-only
 * tags refuse them with BadNotWritable), username/password users, None/Sign/SignAndEncrypt
 * endpoints, and configurable operation limits. It listens on 127.0.0.1 on a free port, keeps
 * that port across `stop()`/`start()` (to test reconnection), and keeps its certificate in a
 * temporary PKI folder of its own.
 *
 * node-opcua's server is an optional peer dependency of this package (the driver needs only
 * node-opcua's client): to run the simulator, `npm install node-opcua-server@2.182.2
 * node-opcua-nodesets@2.182.0` beside `@kiln/plc-opcua`.
 *
 * @example
 * const simulator = new OpcuaSimulator({
 *   tags,
 *   signals: { "reactor.pressure": { kind: "sine", amplitude: 2, offset: 5, periodMs: 10_000 } },
 *   users: [{ userName: "operator", password: "secret" }],
 * });
 * await simulator.start();
 * simulator.endpointUrl; // "opc.tcp://127.0.0.1:53817"
 * simulator.addressOf("reactor.pressure"); // "nsu=urn:kiln:opcua-simulator;s=reactor.pressure"
 * await simulator.dispose();
 */
export class OpcuaSimulator {
  readonly #options: z.output<typeof opcuaSimulatorOptionsSchema>;
  readonly #clock: Clock;
  readonly #tags = new Map<string, SimulatedTag>();
  /** node-opcua and the modules built on it, loaded by the first `start()`. */
  #runtime: OpcuaSimulatorRuntime | undefined;
  #server: OPCUAServer | undefined;
  #certificateManagers: OPCUACertificateManager[] = [];
  #folder: UAFolder | undefined;
  #namespaceIndex = -1;
  #port: number;
  #pkiDir: string | undefined;
  #ownsPkiDir = false;
  #timer: TimerHandle | undefined;
  #updating = false;
  #starting: Promise<void> | undefined;
  #users: readonly { readonly userName: string; readonly password: string }[];
  #maxSubscriptionsPerSession: number;
  #stats = {
    readRequests: 0,
    readNodes: 0,
    writeRequests: 0,
    createMonitoredItemsRequests: 0,
    activateSessionRequests: 0,
    passwordChecks: 0,
  };

  /** @throws KilnValidationError naming each bad option. */
  constructor(options: OpcuaSimulatorOptions) {
    this.#options = parseOrThrow(opcuaSimulatorOptionsSchema, options, "OPC UA simulator options");
    this.#clock = this.#options.clock ?? new SystemClock();
    this.#port = this.#options.port;
    this.#users = this.#options.users;
    this.#maxSubscriptionsPerSession = this.#options.maxSubscriptionsPerSession;
    const tags = this.#options.tags instanceof TagCatalog ? this.#options.tags.list() : this.#options.tags;
    const origin = this.#clock.now();
    for (const tag of tags) {
      const spec: SignalSpec | undefined = this.#options.signals[tag.name];
      const signal = spec ? createSignal(spec, origin) : undefined;
      const initial = signal ? signal(origin) : tag.dataType === "bool" ? false : tag.dataType === "string" ? "" : 0;
      this.#tags.set(tag.name, {
        tag,
        identifier: identifierOf(tag),
        signal,
        value: coerce(initial, tag),
        held: false,
        hidden: false,
        variable: undefined,
      });
    }
    for (const name of Object.keys(this.#options.signals)) {
      if (!this.#tags.has(name)) {
        throw new KilnError("KILN_TAG_UNKNOWN", `A signal is given for "${name}", which is not in the tag list.`, {
          details: { tag: name },
        });
      }
    }
  }

  /** True between a successful {@link start} and {@link stop}. */
  get running(): boolean {
    return this.#server !== undefined;
  }

  /** The port the simulator listens on (chosen on first start when `port` was 0). */
  get port(): number {
    return this.#port;
  }

  /** The endpoint URL clients connect to, e.g. `opc.tcp://127.0.0.1:53817`. */
  get endpointUrl(): string {
    if (this.#port === 0) throw new KilnError("KILN_LIFECYCLE", "The OPC UA simulator has not been started yet.");
    return `opc.tcp://${endpointUrlHost(this.#options.host)}:${this.#port}`;
  }

  /** The namespace URI of the simulated variables. */
  get namespaceUri(): string {
    return this.#options.namespaceUri;
  }

  /**
   * The server's certificate (PEM file). Pass it in the driver's `pki.trustedServerCertificates`
   * to trust this simulator. Available after the first {@link start}.
   */
  get certificateFile(): string {
    if (!this.#pkiDir) throw new KilnError("KILN_LIFECYCLE", "The OPC UA simulator has not been started yet.");
    return path.join(this.#pkiDir, "server", "own", "certs", "certificate.pem");
  }

  /** Request counts, for tests and benchmarks (only requests touching simulated tags count). */
  get stats(): OpcuaSimulatorStats {
    return { ...this.#stats };
  }

  /** Sets every {@link stats} counter back to 0. */
  resetStats(): void {
    this.#stats = {
      readRequests: 0,
      readNodes: 0,
      writeRequests: 0,
      createMonitoredItemsRequests: 0,
      activateSessionRequests: 0,
      passwordChecks: 0,
    };
  }

  /** The portable address of a tag's variable: `nsu=<namespace uri>;s=<identifier>`. */
  addressOf(tagName: string): string {
    return `nsu=${this.#options.namespaceUri};s=${this.#simulated(tagName).identifier}`;
  }

  /** The current value of a tag as the server holds it. */
  valueOf(tagName: string): TagValue {
    return this.#simulated(tagName).value;
  }

  /** Sets a tag's value as if the device changed it; its signal stops driving it. */
  setValue(tagName: string, value: TagValue): void {
    const simulated = this.#simulated(tagName);
    simulated.held = true;
    simulated.value = coerce(value, simulated.tag);
    this.#publish(simulated, this.#clock.now());
  }

  /** Removes a tag's variable from the address space (clients then get BadNodeIdUnknown). */
  hideTag(tagName: string): void {
    const simulated = this.#simulated(tagName);
    simulated.hidden = true;
    if (simulated.variable && this.#server?.engine.addressSpace) {
      this.#server.engine.addressSpace.deleteNode(simulated.variable);
    }
    simulated.variable = undefined;
  }

  /** Puts back a variable removed by {@link hideTag}. */
  showTag(tagName: string): void {
    const simulated = this.#simulated(tagName);
    simulated.hidden = false;
    if (this.#server && !simulated.variable) this.#addVariable(simulated);
  }

  /**
   * The subscriptions and monitored items alive on the server now, from its engine's diagnostics:
   * `subscriptions` is the server's CurrentSubscriptionCount (sessions' subscriptions plus those
   * orphaned by a dropped session and not yet expired); `monitoredItems` sums the items of all
   * of them, orphans included; `sessions` counts open sessions; `subscriptionsCreated` counts the
   * subscriptions created since this run started (CumulatedSubscriptionCount: unchanged across an
   * outage when the client kept its subscription). All 0 while stopped. Tests use it to prove that
   * reconnects leave exactly one subscription per scan group on the server.
   */
  liveSubscriptions(): {
    readonly sessions: number;
    readonly subscriptions: number;
    readonly monitoredItems: number;
    readonly subscriptionsCreated: number;
  } {
    const engine = this.#server?.engine;
    if (!engine) return { sessions: 0, subscriptions: 0, monitoredItems: 0, subscriptionsCreated: 0 };
    const sessions = engine.getSessions();
    const monitoredItems =
      sessions.reduce((sum, session) => sum + session.currentMonitoredItemCount, 0) +
      orphanSubscriptions(engine).reduce((sum, subscription) => sum + subscription.monitoredItemCount, 0);
    return {
      sessions: sessions.length,
      subscriptions: engine.currentSubscriptionCount,
      monitoredItems,
      subscriptionsCreated: engine.cumulatedSubscriptionCount,
    };
  }

  /**
   * Sets how many subscriptions a session may hold from now on (and after restarts); those
   * already created stay. One more is refused with BadTooManySubscriptions.
   */
  setMaxSubscriptionsPerSession(count: number): void {
    if (!Number.isInteger(count) || count < 0) {
      throw new RangeError(`maxSubscriptionsPerSession must be an integer >= 0, got ${count}`);
    }
    this.#maxSubscriptionsPerSession = count;
    if (this.#server) this.#server.engine.serverCapabilities.maxSubscriptionsPerSession = count;
  }

  /**
   * Replaces the accepted user names and passwords (an operator changing a password); applies
   * to the next log-in. Sessions already open stay open, as on most servers.
   */
  setUsers(users: readonly { readonly userName: string; readonly password: string }[]): void {
    this.#users = users.map((user) => ({ ...user }));
  }

  /**
   * Drops every client session on the server side, with its subscriptions, as a server does
   * when sessions time out; the connections stay open. Returns how many sessions were closed.
   */
  closeSessions(): number {
    const engine = this.#server?.engine;
    if (!engine) return 0;
    const sessions = engine.getSessions();
    for (const session of sessions) engine.closeSession(session.authenticationToken, true, "Terminated");
    return sessions.length;
  }

  /**
   * Starts the server: on the configured port the first time (a free one when 0), on the same
   * port after a {@link stop}. Resolves when clients can connect.
   * @throws KilnError `KILN_NOT_SUPPORTED` (with `details.install`) when node-opcua's server, an
   *   optional peer dependency, is not installed.
   */
  start(): Promise<void> {
    if (this.#server) return Promise.resolve();
    this.#starting ??= this.#startNow().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /** Stops the server and closes every client connection. The port and PKI are kept for a restart. */
  async stop(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const simulated of this.#tags.values()) simulated.variable = undefined;
    this.#folder = undefined;
    await server.shutdown(0);
    server.dispose();
    await Promise.all(this.#certificateManagers.map((manager) => manager.dispose().catch(() => undefined)));
    this.#certificateManagers = [];
  }

  /** Stops the server and removes the temporary PKI folder it created. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.#ownsPkiDir && this.#pkiDir) await rm(this.#pkiDir, { recursive: true, force: true });
    this.#ownsPkiDir = false;
  }

  /** Same as {@link dispose}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  async #startNow(): Promise<void> {
    this.#runtime ??= await loadOpcuaSimulatorRuntime();
    const rt = this.#runtime;
    if (!this.#pkiDir) {
      if (this.#options.pkiDir) this.#pkiDir = path.resolve(this.#options.pkiDir);
      else {
        this.#pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-simulator-"));
        this.#ownsPkiDir = true;
      }
    }
    const serverCertificateManager = new rt.OPCUACertificateManager({
      rootFolder: path.join(this.#pkiDir, "server"),
      automaticallyAcceptUnknownCertificate: true,
    });
    const userCertificateManager = new rt.OPCUACertificateManager({
      rootFolder: path.join(this.#pkiDir, "users"),
      automaticallyAcceptUnknownCertificate: true,
    });
    this.#certificateManagers = [serverCertificateManager, userCertificateManager];
    const { operationLimits } = this.#options;
    const server = new rt.OPCUAServer({
      host: this.#options.host,
      hostname: this.#options.host,
      port: this.#port,
      nodeset_filename: [rt.nodesets.standard],
      serverCertificateManager,
      userCertificateManager,
      securityModes: this.#options.securityModes.map((mode) => rt.MessageSecurityMode[mode]),
      securityPolicies: [
        rt.SecurityPolicy.None,
        rt.SecurityPolicy.Basic256Sha256,
        rt.SecurityPolicy.Aes128_Sha256_RsaOaep,
        rt.SecurityPolicy.Aes256_Sha256_RsaPss,
      ],
      allowAnonymous: this.#options.allowAnonymous,
      userManager: {
        isValidUser: (userName: string, password: string) => {
          this.#stats.passwordChecks++;
          return this.#users.some((user) => user.userName === userName && user.password === password);
        },
      },
      serverCapabilities: { operationLimits: { ...operationLimits } },
      buildInfo: { productName: "Kiln OPC UA simulator", manufacturerName: "Kiln" },
      isAuditing: false,
    });
    try {
      await server.initialize();
      // After initialize: node-opcua reads a 0 in its options as "use the default".
      server.engine.serverCapabilities.maxSubscriptionsPerSession = this.#maxSubscriptionsPerSession;
      const addressSpace = server.engine.addressSpace!;
      for (const uri of this.#options.extraNamespaces) addressSpace.registerNamespace(uri);
      const namespace = addressSpace.registerNamespace(this.#options.namespaceUri);
      this.#namespaceIndex = namespace.index;
      this.#folder = namespace.addFolder(addressSpace.rootFolder.objects, {
        browseName: this.#options.folderName,
        nodeId: `s=${this.#options.folderName}`,
      });
      this.#server = server;
      for (const simulated of this.#tags.values()) if (!simulated.hidden) this.#addVariable(simulated);
      server.on("request", (request) => this.#count(request));
      await server.start();
      this.#port = server.endpoints[0]?.port ?? this.#port;
    } catch (error) {
      this.#server = undefined;
      await server.shutdown(0).catch(() => undefined);
      throw new KilnError("KILN_LIFECYCLE", `The OPC UA simulator could not start: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.#scheduleTick();
  }

  #addVariable(simulated: SimulatedTag): void {
    const server = this.#server;
    const folder = this.#folder;
    if (!server || !folder) return;
    const namespace = server.engine.addressSpace!.getNamespace(this.#options.namespaceUri)!;
    const rt = this.#runtime!;
    const dataType = rt.OPCUA_TYPE_OF_TAG[simulated.tag.dataType];
    const access = simulated.tag.access === "readwrite" ? "CurrentRead | CurrentWrite" : "CurrentRead";
    const variable = namespace.addVariable({
      componentOf: folder,
      browseName: simulated.tag.name,
      nodeId: `s=${simulated.identifier}`,
      dataType: rt.DataType[dataType],
      accessLevel: access,
      userAccessLevel: access,
      minimumSamplingInterval: 0,
      // An array tag (arrayLength, ADR 0038) is a one-dimensional array variable of that length.
      ...(simulated.tag.arrayLength === undefined
        ? {}
        : { valueRank: 1, arrayDimensions: [simulated.tag.arrayLength] }),
      ...(simulated.tag.description ? { description: simulated.tag.description } : {}),
    });
    variable.on("value_changed", (dataValue: DataValue) => {
      if (this.#updating) return;
      // A client wrote it: hold the written value.
      simulated.held = true;
      simulated.value = coerce(fromWire(dataValue.value.value, simulated.tag), simulated.tag);
    });
    simulated.variable = variable;
    this.#publish(simulated, this.#clock.now());
  }

  #publish(simulated: SimulatedTag, now: number): void {
    const variable = simulated.variable;
    const rt = this.#runtime;
    if (!variable || !rt) return;
    this.#updating = true;
    try {
      variable.setValueFromSource(
        {
          dataType: rt.OPCUA_TYPE_OF_TAG[simulated.tag.dataType],
          arrayType: Array.isArray(simulated.value) ? rt.VariantArrayType.Array : rt.VariantArrayType.Scalar,
          value: Array.isArray(simulated.value)
            ? (simulated.value as readonly TagScalarValue[]).map((element) => wireValue(element, simulated.tag))
            : wireValue(simulated.value as TagScalarValue, simulated.tag),
        },
        rt.StatusCodes.Good,
        new Date(now),
      );
    } finally {
      this.#updating = false;
    }
  }

  #scheduleTick(): void {
    this.#timer = this.#clock.setTimeout(() => {
      if (!this.#server) return;
      const now = this.#clock.now();
      for (const simulated of this.#tags.values()) {
        if (!simulated.signal || simulated.held || !simulated.variable) continue;
        simulated.value = coerce(simulated.signal(now), simulated.tag);
        this.#publish(simulated, now);
      }
      this.#scheduleTick();
    }, this.#options.updateIntervalMs);
  }

  #count(request: unknown): void {
    const rt = this.#runtime;
    if (!rt) return;
    const ours = (nodeId: NodeId | undefined): boolean => nodeId?.namespace === this.#namespaceIndex;
    if (request instanceof rt.ReadRequest) {
      const nodes = (request.nodesToRead ?? []).filter((node) => ours(node.nodeId)).length;
      if (nodes > 0) {
        this.#stats.readRequests++;
        this.#stats.readNodes += nodes;
      }
    } else if (request instanceof rt.WriteRequest) {
      if ((request.nodesToWrite ?? []).some((node) => ours(node.nodeId))) this.#stats.writeRequests++;
    } else if (request instanceof rt.ActivateSessionRequest) {
      this.#stats.activateSessionRequests++;
    } else if (request instanceof rt.CreateMonitoredItemsRequest) {
      if ((request.itemsToCreate ?? []).some((item) => ours(item.itemToMonitor.nodeId))) {
        this.#stats.createMonitoredItemsRequests++;
      }
    }
  }

  #simulated(tagName: string): SimulatedTag {
    const simulated = this.#tags.get(tagName);
    if (!simulated) {
      throw new KilnError("KILN_TAG_UNKNOWN", `The OPC UA simulator has no tag "${tagName}".`, {
        details: { tag: tagName },
      });
    }
    return simulated;
  }
}

/** The string identifier of the tag's address (`ns=2;s=Reactor.Pressure` gives `Reactor.Pressure`), else its name. */
function identifierOf(tag: Tag): string {
  const match = typeof tag.address === "string" ? /(?:^|;)s=([\s\S]+)$/.exec(tag.address) : null;
  return match ? match[1]! : tag.name;
}

const INTEGER_RANGES: Partial<Record<Tag["dataType"], readonly [number, number]>> = {
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};

/** node-opcua carries a 64-bit integer as [high, low] 32-bit words. */
function wireValue(value: TagScalarValue, tag: Tag): unknown {
  if (tag.dataType !== "int64" && tag.dataType !== "uint64") return value;
  const unsigned = BigInt.asUintN(64, BigInt(value as number | bigint));
  return [Number(unsigned >> 32n), Number(unsigned & 0xffffffffn)];
}

function fromWire(value: unknown, tag: Tag): TagValue {
  if (tag.arrayLength !== undefined && value !== null && typeof value === "object") {
    const elements = Array.from(value as ArrayLike<unknown>);
    return Object.freeze(
      elements.map((element) => fromWire(element, { ...tag, arrayLength: undefined }) as TagScalarValue),
    );
  }
  if ((tag.dataType !== "int64" && tag.dataType !== "uint64") || !Array.isArray(value)) return value as TagValue;
  const unsigned = (BigInt((value[0] as number) >>> 0) << 32n) | BigInt((value[1] as number) >>> 0);
  return tag.dataType === "int64" ? BigInt.asIntN(64, unsigned) : unsigned;
}

/**
 * `value` in the tag's type: for an array tag each element (a scalar, e.g. a signal's value,
 * fills all `arrayLength` elements), for a scalar tag the value.
 */
function coerce(value: TagValue, tag: Tag): TagValue {
  if (tag.arrayLength !== undefined) {
    const elements = Array.isArray(value)
      ? (value as readonly TagScalarValue[])
      : Array.from({ length: tag.arrayLength }, () => value as TagScalarValue);
    return Object.freeze(elements.map((element) => coerceScalar(element, tag)));
  }
  return coerceScalar(value as TagScalarValue, tag);
}

function coerceScalar(value: TagScalarValue, tag: Tag): TagScalarValue {
  switch (tag.dataType) {
    case "bool":
      return typeof value === "boolean" ? value : Number(value) !== 0;
    case "string":
      return String(value);
    case "float32":
    case "float64":
      return Number(value);
    case "int64":
    case "uint64": {
      if (typeof value === "bigint") return value;
      const number = Math.round(Number(value));
      return Number.isFinite(number) ? number : 0;
    }
    default: {
      const number = Math.round(Number(value));
      const [min, max] = INTEGER_RANGES[tag.dataType]!;
      return Number.isFinite(number) ? Math.min(max, Math.max(min, number)) : 0;
    }
  }
}

/**
 * The subscriptions node-opcua's server keeps after their session timed out, until their lifetime
 * ends (its engine's orphan publish engine, private: node-opcua counts them in
 * CurrentSubscriptionCount but exposes no public list). Empty when node-opcua has none or changed.
 */
function orphanSubscriptions(engine: object): readonly { readonly monitoredItemCount: number }[] {
  const orphans = (engine as { _orphanPublishEngine?: { subscriptions?: unknown } })._orphanPublishEngine;
  const subscriptions = orphans?.subscriptions;
  return Array.isArray(subscriptions) ? (subscriptions as { monitoredItemCount: number }[]) : [];
}
