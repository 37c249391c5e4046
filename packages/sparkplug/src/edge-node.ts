import type { IClientOptions, MqttClient } from "mqtt";
import { EventBus } from "@kiln/core/advanced";
import {
  KilnError,
  QualityCodes,
  SystemClock,
  type Clock,
  type ControlSystem,
  type CvtChange,
  type Disposer,
  type DriverStatus,
  type EventBusView,
  type Principal,
  type Sample,
  type Tag,
  type TagValue,
  type TimerHandle,
} from "@kiln/core";
import {
  ConnectionLifecycle,
  KilnValidationError,
  auditedTarget,
  checkBackoff,
  raceAbort,
  type DriverStatusChange,
  type RecordJournal,
  type ReconnectBackoff,
  type TagScalarValue,
  type ValidationIssue,
} from "@kiln/core/driver-kit";
import { hostAcksMarkerPath, loadHostAcksMarker, saveHostAcksMarker } from "./host-acks-marker";
import { memoryBdSeqStore, type BdSeqStore } from "./bdseq-store";
import { CommandDropAudit, type DroppedCommandReason } from "./command-drop-audit";
import { durationIssues, mqttTimingIssues } from "./duration-options";
import { summarizeRefusals, type EarlyRefusal } from "./refusal-summary";
import { JournalBacklog, MemoryBacklog, type ForwardBacklog, type SentMark } from "./forward-backlog";
import {
  boundedGoodbye,
  checkBrokerUrl,
  checkMaxPayloadBytes,
  BACKOFF_OPTION_KEYS,
  checkOptionShape,
  endSession,
  mqttConnect,
  redactedBrokerUrl,
  withoutBrokerSecret,
  sessionOptions,
  subscribeChecked,
  type OptionKeys,
} from "./mqtt-client";
import { SessionTakeover } from "./session-takeover";
import { sparkplugDataTypeOfTag, type SparkplugMetricDataType } from "./datatypes";
import { decodeHostState } from "./host-state";
import {
  decodePayload,
  encodePayload,
  scalarValueProblem,
  type SparkplugMetric,
  type SparkplugPayload,
  type SparkplugPropertySet,
} from "./payload";
import { checkSparkplugIds, sparkplugTopic } from "./topic";

/** The metric a host writes `true` to, by NCMD, to ask for the birth certificates again. */
export const REBIRTH_METRIC = "Node Control/Rebirth";
/** The birth/death sequence metric of NBIRTH and NDEATH (Int64, Sparkplug 3.0.0 section 5.2). */
export const BDSEQ_METRIC = "bdSeq";
/** The machine-state metric of each device (String). Tag names cannot hold a space, so it never clashes with a tag. */
export const MACHINE_STATE_METRIC = "Kiln/Machine State";
/**
 * The NBIRTH metric (UInt64) by which an edge node with `awaitHostAcks` asks a Kiln host for
 * acknowledgements (ADR 0037): its value is the number of DDATA messages the node published in
 * this MQTT session (bdSeq) before this birth, so the host numbers the DDATA that follow
 * (value + 1, + 2...) as the node does. A host that does not know it stores it as a metric.
 */
export const AWAIT_ACKS_METRIC = "Kiln/Await Acks";
/**
 * The NCMD metric (UInt64) by which a Kiln host acknowledges what it stored (ADR 0037): its value
 * is the number (in the edge node's session, counted from 1) of the newest DDATA message all of
 * whose samples, and those of every DDATA before it, are committed to its store. Properties:
 * `bdSeq` (UInt64, the session acknowledged) and `hostId` (String, the host that stored them).
 */
export const STORED_THROUGH_METRIC = "Kiln/Stored Through";
/**
 * The device metric (UInt64, transient) that numbers each DDATA of an edge node with
 * `awaitHostAcks` (ADR 0037): born in the DBIRTH with the number of the last DDATA before it,
 * then carried by every DDATA with that message's number (the previous one + 1, counted from 1 in
 * the MQTT session, bdSeq). A Kiln host acknowledges by this number and treats any DDATA whose
 * number is not exactly the next as a gap (it asks for a rebirth), so a loss the 0–255 `seq`
 * wraps over (256 DDATA in a row) is never acknowledged. Transient: other hosts do not store it.
 */
export const MESSAGE_NUMBER_METRIC = "Kiln/Message Number";

/**
 * Property keys on every device metric (see docs/northbound/sparkplug.md):
 * - `Quality` (Int32): the specification's quality code (6.4.8.1): 192 good, 500 stale (Kiln's
 *   `uncertain`), 0 bad. Sent in births always; in DATA only when not good (absent means good).
 * - `StatusCode` (UInt32): the OPC UA StatusCode of the sample's quality, exactly.
 * - `StatusReason` (String): why the quality is not good, when Kiln knows.
 * - `engUnit` (String), `engLow` / `engHigh` (Double), `description` (String), `writable`
 *   (Boolean): from the tag catalog, in births only.
 */
export const METRIC_PROPERTIES = {
  quality: "Quality",
  statusCode: "StatusCode",
  statusReason: "StatusReason",
  engUnit: "engUnit",
  engLow: "engLow",
  engHigh: "engHigh",
  description: "description",
  writable: "writable",
} as const;

/**
 * Store-and-forward of a {@link SparkplugEdgeNode} (Sparkplug 3.0.0: historical data sent with
 * `is_historical`; ADR 0031). While the node cannot publish (broker unreachable, primary host
 * offline, births not out yet), every changed sample is kept in a bounded backlog; once births
 * are out again it is sent, oldest first, as DDATA whose metrics carry `is_historical: true`,
 * alongside live DDATA.
 */
export interface SparkplugStoreAndForwardOptions {
  /**
   * The backlog's journal file: core's crash-safe `RecordJournal` (each record fsynced before it
   * counts; opened, locked and closed by the node). Without `path` and `journal` the backlog is
   * in memory: the same bounds, order and counts, but lost when the process ends.
   */
  readonly path?: string;
  /**
   * An open `RecordJournal` (from `@kiln/core/driver-kit`) to use instead of `path`; the caller
   * owns it: the node never closes it. Its own `maxBytes` bounds it; `maxBytes` here must then
   * be left out.
   */
  readonly journal?: RecordJournal;
  /** Byte limit of the backlog (record headers included). @default 67108864 (64 MiB) */
  readonly maxBytes?: number;
  /** Sample limit of the backlog. @default 1000000 */
  readonly maxSamples?: number;
  /**
   * What happens at a limit: `drop-oldest` drops the oldest records to make room (the newest
   * history is kept); `refuse-new` keeps the backlog and drops the new samples. Either way every
   * dropped sample is counted and evented (`samples-drop`): in `storeAndForward.samplesDropped`
   * when it was never published, in `samplesDroppedAfterPublish` when `drop-oldest` dropped it
   * after it was published and before it was known to be stored (the host may have it).
   * @default "drop-oldest"
   */
  readonly overflow?: "drop-oldest" | "refuse-new";
  /**
   * Samples per backlog record, and so per historical DDATA message: the replay publishes up to
   * 16 records, letting live data through after each, waits for the broker to have taken them,
   * then releases them (one durable mark). 1 to 10000, and at most `maxSamples`. @default 500
   */
  readonly batchSamples?: number;
}

/** Options of {@link SparkplugEdgeNode}. */
export interface SparkplugEdgeNodeOptions {
  /** The Kiln system to publish; used through its public API only. */
  readonly system: ControlSystem;
  /** The broker, e.g. `mqtt://broker.plant:1883` or `mqtts://...`. */
  readonly brokerUrl: string;
  /** Sparkplug group id (no `+`, `/`, `#`). */
  readonly groupId: string;
  /** Sparkplug edge node id, unique in the group. */
  readonly edgeNodeId: string;
  /** Sparkplug device id of the machine. @default the system's `machineId` */
  readonly deviceId?: string;
  /**
   * The primary host application's id. When set, the node publishes births and data only while
   * that host's retained `spBv1.0/STATE/<id>` says it is online (Sparkplug 3.0.0, 5.x
   * [tck-id-message-flow-edge-node-birth-publish-phid-wait]); when the host goes offline it
   * publishes NDEATH, disconnects and starts over. @default none: publish whenever connected
   */
  readonly primaryHostId?: string;
  /**
   * How far ahead of this node's clock a primary host's STATE timestamp may be, in ms (5 minutes
   * by default; Infinity turns the check off). Sparkplug 3.0.0 compares STATE timestamps only with each other: a STATE is followed
   * when it is at least as new as the last one seen
   * ([tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp]), so a retained STATE
   * stamped far in the future (a forged one, or a host whose clock was wrong) would make the node
   * ignore every later STATE of that host until the node restarts. With a bound, a STATE further
   * ahead than it is held back (`host-state-ignore` reason `future`, a problem in health) and
   * checked again every second: it is followed once this node's clock has come within the bound
   * (an NTP step after boot), dropped when the session ends or a STATE at least as new is
   * followed. Set it only where host and node clocks are kept within the bound: a node whose
   * clock stays further behind its host never publishes. The default was Infinity before
   * amendment fix19b of ADR 0043 (review adv19z MEDIUM-1: a retained STATE offline stamped 10
   * years ahead, published by anyone allowed on the STATE topic, silenced every edge node for
   * good; a host restart does not outrun it). @default 300000 (5 minutes)
   */
  readonly maxHostClockSkewMs?: number;
  /**
   * The shortest time between a birth and a rebirth asked for by NCMD `Node Control/Rebirth`, in
   * ms. A request within it is not refused: the requests that come inside it are coalesced into
   * one rebirth when it has passed (counted in `commands.rebirthsCoalesced`), so a flood of
   * requests costs one full birth per interval, and every request is followed by a birth.
   * From 0 to 3,600,000 (1 hour). @default 1000
   */
  readonly minRebirthIntervalMs?: number;
  /**
   * Who DCMD writes run as: each goes through `system.writeTag(principal, ...)`, so it is
   * authorized, checked and audited by Kiln like any other write. Give a principal without
   * `tag.write` for a read-only node: every DCMD write is then refused and audited as denied.
   * Its `source` defaults to `sparkplug:<groupId>/<edgeNodeId>`.
   */
  readonly principal: Principal;
  /**
   * Keeps the last bdSeq across restarts (see {@link fileBdSeqStore}). Give one in production.
   * Without it, bdSeq is kept in memory and the first one of the process is **random** (0–255):
   * a restarted process cannot go on from its predecessor's, and starting at 0 each time would
   * let a hung predecessor's late Will (its NDEATH, bdSeq 0) take the new session (bdSeq 0 too)
   * down at the host, which tells an old session's death from the current one by bdSeq alone.
   * A random start leaves a 1 in 256 chance of that; a persisted bdSeq none. (Sparkplug 3.0.0
   * fixes no first value, only the increment: [tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq].)
   * @default in memory, random start
   */
  readonly bdSeqStore?: BdSeqStore;
  /** Reconnect spacing, on the driver kit's backoff. @default { initialDelayMs: 1000, maxDelayMs: 30000 } */
  readonly reconnect?: ReconnectBackoff;
  /**
   * MQTT.js client options (username, password, TLS, clientId, keepalive, protocolVersion 4 or
   * 5...). The node sets `will`, `clean: true`, `reconnectPeriod: 0` (it reconnects itself) and,
   * for MQTT 5, a session expiry of 0, as Sparkplug requires. `connectTimeout` (ms, 1 to 3,600,000)
   * and `keepalive` (whole seconds, 0 to 65,535) are checked like the node's own durations.
   *
   * A `clientId` must be this node's alone: a broker ends the older session of a client id
   * at every CONNECT, so two clients sharing one end each other's session; the node then names
   * `client id "<id>" (likely) in use by another client` in its link reason and health and
   * reconnects on a backoff that grows to `reconnect.maxDelayMs` (ADR 0043, amendment fix19q).
   * Every subscription's SUBACK is checked: one the broker refuses keeps the session from being
   * used, named with its topic filter and reason code, and retried on the backoff.
   * @throws KilnValidationError (KILN_VALIDATION) naming `mqtt.connectTimeout` or `mqtt.keepalive`.
   */
  readonly mqtt?: Omit<IClientOptions, "will" | "clean" | "reconnectPeriod">;
  /**
   * Most command messages, NCMD and DCMD together, waiting to be handled (they run one after the
   * other, in order). One more is dropped unhandled (`command-drop` `queue-full`, counted in
   * health, audited summed per second), so a flood cannot queue unbounded work. @default 64
   */
  readonly maxPendingCommands?: number;
  /**
   * Most metrics one DCMD or NCMD may carry; a message with more is dropped unhandled, none of
   * its writes done (`command-drop`, counted in health). @default 256
   */
  readonly maxMetricsPerCommand?: number;
  /**
   * Largest NCMD, DCMD or STATE payload taken, in bytes, checked before it is decoded (a DCMD of
   * megabytes would hold the event loop for seconds). A larger command is dropped unhandled
   * (`command-drop` `too-large`, counted, audited as `sparkplug.dcmd-drop` or `sparkplug.ncmd-drop`); a larger
   * STATE is rejected (`message-reject`). It is not sent to the broker as an MQTT 5 Maximum
   * Packet Size: the broker would drop a larger command silently (MQTT 5 §3.1.2.11.4), uncounted
   * and unaudited (ADR 0043, amendment fix19ac). So it does not bound memory, with MQTT 3.1.1 or 5:
   * MQTT.js reads a whole packet, up to MQTT's 256 MB, first; bound memory with the broker's own
   * limit (mosquitto `message_size_limit`, EMQX `mqtt.max_packet_size`), as for the host.
   * @default 65536 (64 KiB: 256 metrics of a command take a few KiB)
   */
  readonly maxPayloadBytes?: number;
  /**
   * The broker's Maximum Packet Size in bytes (MQTT 5, section 3.2.2.3.6: the largest packet it
   * accepts; mosquitto `max_packet_size`), used when the broker announces none — always with
   * MQTT 3.1.1, and with an MQTT 5 broker that sets no limit in its CONNACK. The node checks each
   * NBIRTH, DBIRTH and DDATA against it as against an announced one: the largest values are sent
   * as null and bad `BadEncodingLimitsExceeded` with the reason until the message fits. Without
   * it (and without an announced limit) nothing is checked, and a broker that limits packet size
   * ends the session at a message over its limit (health then names the likely cause).
   * An announced limit always wins. From 1 to 268435455.
   * @default none (no limit checked unless the broker announces one)
   * @throws KilnError `KILN_VALIDATION` (path `brokerMaximumPacketSize`) when not a whole number in range.
   */
  readonly brokerMaximumPacketSize?: number;
  /** How long one connect attempt may take, in ms, from 1 to 3,600,000 (1 hour). @default 10000 */
  readonly connectTimeoutMs?: number;
  /** Time source (message timestamps, reconnect waits). @default SystemClock */
  readonly clock?: Clock;
  /** Randomness in [0, 1) for the reconnect jitter and the first bdSeq without a `bdSeqStore`. @default Math.random */
  readonly random?: () => number;
  /**
   * Keep what changes while the node cannot publish and send it later as historical data (see
   * {@link SparkplugStoreAndForwardOptions}). @default off: the next births carry each tag's
   * latest value only, and the changes in between are counted in `samplesNotPublished`
   */
  readonly storeAndForward?: SparkplugStoreAndForwardOptions;
  /**
   * Keep every published DDATA's samples in the store-and-forward journal until the primary host
   * acknowledges it stored them (ADR 0037): only for a Kiln `SparkplugHost` as primary host
   * (others never acknowledge, and the journal fills up to its limit). The NBIRTH then declares
   * {@link AWAIT_ACKS_METRIC}; acks come as NCMD {@link STORED_THROUGH_METRIC} and release the
   * records they cover durably. What is unacknowledged when a new birth goes out (a new session,
   * the primary host back, a rebirth) is sent again as `is_historical` DDATA before the rest of the
   * backlog. Needs `storeAndForward` and `primaryHostId`. The journal's records are then also held
   * in memory (at most `storeAndForward.maxBytes`).
   *
   * `"auto"` (the default with `storeAndForward` and `primaryHostId`, amendment fix19b of ADR
   * 0043): the NBIRTH declares {@link AWAIT_ACKS_METRIC} and DDATA are numbered, as with `true`;
   * until the primary host's first acknowledgement in this run, what is published is released at
   * once, as with `false` (a host that never acknowledges, not a Kiln host, costs nothing and is
   * named in `health().problems` once `ackOverdueMs` has passed without an ack); from the first
   * acknowledgement on, everything is kept until acknowledged, as with `true`. So with a Kiln
   * primary host, what is published after its first ack survives a host that dies without its Will
   * (a broker and host crashing together, the broker restoring the dead host's retained STATE
   * online); what went out before it is only as safe as without acks, counted in
   * `acknowledgement.samplesUnconfirmed`. With a journal file the first acknowledgement is
   * recorded in `<journal path>.host-acks` (amendment fix19g): a later process of the node whose
   * `primaryHostId` it names awaits acknowledgements from its start, recovered records included.
   * @default "auto" with `storeAndForward` and `primaryHostId`, else false
   */
  readonly awaitHostAcks?: boolean | "auto";
  /**
   * With acknowledgements awaited (`awaitHostAcks`): how long, in ms, published samples may wait
   * for an acknowledgement before `health().problems` says so (the lag and the count: the host may
   * be gone without its Will; they are kept and sent again to the next host). With `"auto"`
   * before the first ack: how long after the first numbered DDATA a host that has not acknowledged
   * anything is named as not acknowledging. From 1 to 3,600,000. @default 10000
   */
  readonly ackOverdueMs?: number;
}

/** The acknowledgement part of {@link SparkplugStoreAndForwardHealth} (with `awaitHostAcks`, ADR 0037). */
export interface SparkplugAcknowledgementHealth {
  /** Samples published and kept until the host acknowledges them (live and replayed). */
  readonly unacknowledgedSamples: number;
  /** Records (journal records) published and not yet acknowledged. */
  readonly unacknowledgedRecords: number;
  /** Age of the last accepted acknowledgement, in ms (by the node's clock); undefined before the first. */
  readonly lastAckAgeMs?: number;
  /** Samples released by acknowledgements since start. */
  readonly samplesAcknowledged: number;
  /**
   * With `"auto"` before the primary host's first acknowledgement ever (no marker beside the
   * journal, fix19g): samples published and released at once that no acknowledgement covered
   * (those of a session whose births were followed by new ones, and those of this session not yet
   * covered). The host stored them or they are lost (a host gone without its Will, a host that does
   * not acknowledge): this run cannot tell, so they are counted here, not as dropped. Since start.
   */
  readonly samplesUnconfirmed: number;
  /** Acknowledgements accepted, ignored (another host, an old bdSeq) and refused (malformed, counted in `commands.malformed` too). */
  readonly acks: { readonly accepted: number; readonly ignored: number; readonly refused: number };
  /**
   * True while published samples are kept until acknowledged: always with `awaitHostAcks: true`;
   * with `"auto"`, from the primary host's first acknowledgement on (in this run, or in an
   * earlier one as `<journal path>.host-acks` records, amendment fix19g).
   */
  readonly awaiting: boolean;
}

/** The store-and-forward part of {@link SparkplugEdgeNodeHealth}. */
export interface SparkplugStoreAndForwardHealth {
  /** True for a journal on disk, false for the in-memory buffer. */
  readonly durable: boolean;
  /** Samples in the backlog now (stored, not yet released after replay), and waiting to be stored. */
  readonly backlogSamples: number;
  /** Records (historical DDATA messages to come) in the backlog now. */
  readonly backlogRecords: number;
  /** Bytes the backlog holds now, of `maxBytes`. */
  readonly backlogBytes: number;
  /** The limit in force: bytes of the backlog journal. */
  readonly maxBytes: number;
  /** The limit in force: samples in the backlog. */
  readonly maxSamples: number;
  /** Age of the oldest sample in the backlog, in ms (by the node's clock); undefined when empty. */
  readonly oldestAgeMs?: number;
  /** True while the backlog is being sent. */
  readonly replaying: boolean;
  /** Samples stored since start (recovered ones not included: see `recovered`). */
  readonly samplesStored: number;
  /** Samples sent as historical DDATA and released since start. */
  readonly samplesReplayed: number;
  /**
   * Samples dropped since start: at a limit (by the overflow policy), when the journal could not
   * take them (`KILN_JOURNAL_FAILED`), or at replay when the tag they belong to is no longer in
   * the catalog (or changed type). None of them was published by this process: exact for the
   * samples it took; a record `recovered` from an earlier process's journal counts here when
   * dropped, though that process may have published it (and the host stored it) before it ended.
   * A birth carries each metric's current value at its own timestamp, so the newest dropped
   * sample of a metric (with `refuse-new`, the newest are the ones dropped) may still reach the
   * host in the next birth: counted here, at most one per metric per birth, though not lost.
   */
  readonly samplesDropped: number;
  /**
   * Samples `drop-oldest` dropped after they had been published and before they were known to
   * be stored: with `awaitHostAcks`, published and not yet acknowledged (the host may have
   * stored them, or not); without, in the record a replay was sending (waiting for the broker's
   * answer). Lost to the host is at most this many (and `samplesDropped`); not in `samplesDropped`.
   */
  readonly samplesDroppedAfterPublish: number;
  /** What was found in the journal when it was opened (records and samples from an earlier run). */
  readonly recovered?: { readonly records: number; readonly samples: number; readonly unreadableRecords: number };
  /**
   * With `awaitHostAcks`: what is published and not yet acknowledged. `backlogSamples` and
   * `backlogRecords` then count what is still to be sent only.
   */
  readonly acknowledgement?: SparkplugAcknowledgementHealth;
}

/** What {@link SparkplugEdgeNode.health} reports. */
export interface SparkplugEdgeNodeHealth {
  /** The broker link: `connected`, `reconnecting`, `disconnected`, `closed`... */
  readonly link: DriverStatus;
  /** Why the link is in its state, where known. */
  readonly linkReason?: string;
  /**
   * The primary host, when one is configured: online, offline, or unknown (no STATE taken yet in
   * this MQTT session, and the newest one taken before was not offline: a node silenced by a STATE
   * offline shows `offline` across its reconnects until a newer STATE is taken; amendment fix19i).
   */
  readonly primaryHost?: {
    readonly id: string;
    readonly state: "online" | "offline" | "unknown";
    readonly timestamp?: number;
  };
  /** True while births are out and data flows. */
  readonly publishing: boolean;
  /** The bdSeq of the current (or last) MQTT session; undefined before the first. */
  readonly bdSeq?: number;
  /** Messages and metrics published since start. */
  readonly published: { readonly births: number; readonly dataMessages: number; readonly metrics: number };
  /**
   * Samples that changed while the node could not publish (link down, host offline, before
   * births) and were not sent one by one: the next births carry each tag's latest value only.
   * Always 0 with store-and-forward, which keeps them (see `storeAndForward`).
   */
  readonly samplesNotPublished: number;
  /** Store-and-forward, when configured. */
  readonly storeAndForward?: SparkplugStoreAndForwardHealth;
  /** DCMD/NCMD outcomes since start. */
  readonly commands: {
    readonly written: number;
    readonly refused: number;
    /** Rebirths published at an NCMD `Node Control/Rebirth`. */
    readonly rebirths: number;
    /**
     * NCMD rebirth requests folded into another birth: they came within `minRebirthIntervalMs` of
     * the last birth, or while a rebirth was already due.
     */
    readonly rebirthsCoalesced: number;
    readonly malformed: number;
    /**
     * Command messages dropped unhandled: beyond `maxPendingCommands` waiting, carrying more
     * than `maxMetricsPerCommand` metrics, larger than `maxPayloadBytes`, retained, or reaching a
     * session that was ending (each reported by `command-drop`).
     */
    readonly dropped: number;
  };
  /**
   * Metrics that could not be encoded as their Sparkplug type and were sent as null with Quality
   * bad and the reason instead (a value beyond Float's range, say), or whose value was too large
   * for the broker's Maximum Packet Size, since start: each sample (metric and timestamp) counted
   * once, however many births or fitting attempts encode it again.
   */
  readonly metricsNotEncodable: number;
  /** Problems in words; empty when all is well. */
  readonly problems: readonly string[];
}

/** Events of a {@link SparkplugEdgeNode}, by type. */
export interface SparkplugEdgeNodeEvents {
  /** The broker link changed state (or a reconnect attempt failed: `from` = `to` = `reconnecting`). */
  "link-change": DriverStatusChange;
  /** The primary host's STATE changed (a STATE message with a current timestamp). */
  "host-state-change": { readonly hostId: string; readonly online: boolean; readonly timestamp: number };
  /**
   * A STATE of the primary host was ignored: `older` than the newest one seen (kept across
   * sessions, as Sparkplug 3.0.0 requires; an old session's Will, or a host whose clock is behind
   * the previous one's), or `future` (further ahead of this node's clock than
   * `maxHostClockSkewMs`). An ignored `online: true` is also a problem in health until a STATE is taken.
   */
  "host-state-ignore": {
    readonly hostId: string;
    readonly online: boolean;
    readonly timestamp: number;
    readonly reason: "older" | "future";
    readonly message: string;
  };
  /** NBIRTH and DBIRTH were published. */
  "birth-publish": { readonly bdSeq: number; readonly reason: "session" | "rebirth"; readonly metrics: number };
  /** A DCMD write went through Kiln's command path. */
  "command-write": { readonly tag: string; readonly value: TagValue };
  /** A DCMD metric was refused (by Kiln's checks, or because it names no tag); `code` is the KilnError code. */
  "command-refuse": {
    readonly tag?: string;
    readonly alias?: number | bigint;
    readonly code: string;
    readonly message: string;
  };
  /**
   * Store-and-forward dropped samples that will never be sent: `overflow` at a limit (by the
   * policy), `journal-failed` when the journal could not take them, `unknown-metric` at replay
   * for a tag no longer in the catalog (or of another type), `unreadable` for a journal record
   * that is not a Sparkplug payload (its sample count unknown: `samples` 0), `unencodable` for
   * samples no Sparkplug payload could carry even as null metrics, `stopped` for what an
   * in-memory backlog (no `path` nor `journal`) still held at `stop()` and no host had
   * acknowledged (with `awaitHostAcks`, a record an ack covered can still be held behind an
   * older one not yet acknowledged: stored by the host, so not counted).
   */
  "samples-drop": {
    readonly samples: number;
    readonly reason: "overflow" | "journal-failed" | "unknown-metric" | "unreadable" | "unencodable" | "stopped";
    /**
     * True when the samples had been published before they were dropped and were not known to be
     * stored (the host may have them): counted in `samplesDroppedAfterPublish`, not `samplesDropped`.
     */
    readonly published?: boolean;
    readonly message: string;
  };
  /**
   * A command message was dropped unhandled: `queue-full` when `maxPendingCommands` commands (NCMD
   * and DCMD) were already waiting, `too-many-metrics` when it carried more than `maxMetricsPerCommand`,
   * `too-large` when its payload was over `maxPayloadBytes` (not decoded), `retained` when it
   * came with the MQTT retain flag (Sparkplug 3.0.0 requires NCMD and DCMD with retain false,
   * [tck-id-topics-ncmd-mqtt], [tck-id-topics-dcmd-mqtt]: a retained command is an old one the
   * broker replays on every subscribe, so it is never written), `session-closing` when it reached
   * an MQTT session that was ending (the goodbye after the primary host's STATE offline, or
   * `stop()`: up to about 4 s of NDEATH and DISCONNECT) or had been replaced by a reconnect,
   * `session-unborn` when it reached a session whose NBIRTH was not (yet) published (after a
   * reconnect, until the primary host is online again). Both are checked again right before each
   * DCMD write: a DCMD queued while the session was born is not written once it no longer is (its
   * remaining metrics are refused, `command-refuse` `KILN_NOT_CONNECTED`, and audited).
   * `unknown-node-metric` when an NCMD carried metrics other than `Node Control/Rebirth` and
   * `Kiln/Stored Through` (a device tag's name, which only a DCMD writes; `metrics` says how
   * many; they are audited as one refused `sparkplug.ncmd-drop` entry per message, naming how many
   * and the first few; the rest of the NCMD is acted on). Nothing of it was written. A dropped
   * command message (and a DCMD that does not decode) is audited: one refused
   * `sparkplug.dcmd-drop` (or `sparkplug.ncmd-drop`) entry per topic, reason and second, naming
   * how many messages it stands for.
   */
  "command-drop": {
    readonly topic: string;
    readonly reason:
      | "queue-full"
      | "too-many-metrics"
      | "too-large"
      | "retained"
      | "session-closing"
      | "session-unborn"
      | "unknown-node-metric";
    readonly metrics?: number;
    /** The payload's size, for `too-large`. */
    readonly bytes?: number;
  };
  /** A message on a command or STATE topic could not be read; it was ignored. */
  "message-reject": { readonly topic: string; readonly message: string };
}

interface MetricBinding {
  readonly tag: Tag;
  readonly alias: number;
  readonly datatype: SparkplugMetricDataType;
}

interface Session {
  readonly client: MqttClient;
  readonly bdSeq: number;
  born: boolean;
  closing: boolean;
  /**
   * The broker's Maximum Packet Size in bytes: from its MQTT 5 CONNACK, else the
   * `brokerMaximumPacketSize` option; undefined when neither gives one.
   */
  brokerMaxPacketSize?: number;
  /** Where {@link brokerMaxPacketSize} came from, as said in health. */
  packetLimitSource?: string;
  /** The largest message published on the session, as an MQTT packet (to name the likely cause of a dropped session). */
  largestPublish?: { readonly what: string; readonly bytes: number; readonly at: number };
}

/**
 * The size of an MQTT PUBLISH packet (QoS 0) of `payloadBytes` on `topic`, in bytes, at most: fixed
 * header (1 + up to 4 for the remaining length), topic (2 + its UTF-8 length), MQTT 5 properties
 * length (1, none set), payload.
 */
function publishPacketSize(topic: string, payloadBytes: number): number {
  return 1 + 4 + 2 + Buffer.byteLength(topic) + 1 + payloadBytes;
}

/** How soon after a message larger than any before the broker's ending the session points to its size, in ms. */
const TOO_LARGE_WINDOW_MS = 2_000;

/** How long each step of a goodbye (DDEATH, NDEATH, DISCONNECT) may take, in ms. */
const DEFAULT_BACKOFF: ReconnectBackoff = { initialDelayMs: 1_000, maxDelayMs: 30_000 };
/** How long the replay waits for the broker to confirm a historical DDATA (the UNSUBACK barrier), in ms. */
const BARRIER_TIMEOUT_MS = 30_000;
/**
 * Records a replay publishes before one barrier and one durable release: at most this many are
 * sent again after a crash or a lost broker mid-replay (docs/northbound/sparkplug.md).
 */
const REPLAY_WINDOW_RECORDS = 16;

interface ForwardSettings {
  readonly path?: string;
  readonly journal?: RecordJournal;
  readonly maxBytes: number;
  readonly maxSamples: number;
  readonly overflow: "drop-oldest" | "refuse-new";
  readonly batchSamples: number;
}

/** Checks and completes the store-and-forward options. @throws KilnValidationError naming each bad field. */
function forwardSettings(options: SparkplugStoreAndForwardOptions): ForwardSettings {
  const issues: ValidationIssue[] = [];
  const integer = (field: keyof SparkplugStoreAndForwardOptions, min: number, max: number): void => {
    const value = options[field];
    if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max))
      issues.push({ path: `storeAndForward.${field}`, message: `must be an integer from ${min} to ${max}` });
  };
  integer("maxBytes", 1024, Number.MAX_SAFE_INTEGER);
  integer("maxSamples", 1, Number.MAX_SAFE_INTEGER);
  integer("batchSamples", 1, 10_000);
  if (options.overflow !== undefined && options.overflow !== "drop-oldest" && options.overflow !== "refuse-new")
    issues.push({ path: "storeAndForward.overflow", message: 'must be "drop-oldest" or "refuse-new"' });
  if (options.path !== undefined && (typeof options.path !== "string" || options.path === ""))
    issues.push({ path: "storeAndForward.path", message: "must be a non-empty file path" });
  if (options.path !== undefined && options.journal !== undefined)
    issues.push({ path: "storeAndForward.journal", message: "give path or journal, not both" });
  if (options.journal !== undefined && options.maxBytes !== undefined)
    issues.push({ path: "storeAndForward.maxBytes", message: "an open journal is bounded by its own maxBytes" });
  const maxSamples = options.maxSamples ?? 1_000_000;
  const batchSamples = options.batchSamples ?? Math.min(500, maxSamples);
  if (issues.length === 0 && batchSamples > maxSamples)
    issues.push({ path: "storeAndForward.batchSamples", message: `must be at most maxSamples (${maxSamples})` });
  if (issues.length > 0) throw new KilnValidationError("Sparkplug edge node options", issues);
  return {
    ...(options.path === undefined ? {} : { path: options.path }),
    ...(options.journal === undefined ? {} : { journal: options.journal }),
    maxBytes: options.journal?.maxBytes ?? options.maxBytes ?? 64 * 1024 * 1024,
    maxSamples,
    overflow: options.overflow ?? "drop-oldest",
    batchSamples,
  };
}

const DEFAULT_MAX_PENDING_COMMANDS = 64;
/** `ackOverdueMs`: how long published samples may wait for an acknowledgement before it is a problem. */
const DEFAULT_ACK_OVERDUE_MS = 10_000;
/** `maxHostClockSkewMs` (amendment fix19b of ADR 0043): 5 minutes, well beyond NTP-kept clocks. */
const DEFAULT_MAX_HOST_CLOCK_SKEW_MS = 300_000;
/** How often a STATE held back as too far ahead is checked again against the node's clock (ms). */
const DEFERRED_STATE_RECHECK_MS = 1_000;
const DEFAULT_MIN_REBIRTH_INTERVAL_MS = 1_000;
const DEFAULT_MAX_METRICS_PER_COMMAND = 256;
const DEFAULT_MAX_PAYLOAD_BYTES = 65_536;

/** `metric` as sent when it cannot be encoded: null, Quality bad, BadTypeMismatch and the reason. */
function unencodableMetric(metric: SparkplugMetric, problem: string): SparkplugMetric {
  const { name, alias, timestamp, datatype } = metric;
  return {
    ...(name === undefined ? {} : { name }),
    ...(alias === undefined ? {} : { alias }),
    // A timestamp the encoder refused is left out rather than spoil the metric again.
    ...(timestamp !== undefined && Number.isSafeInteger(timestamp) && timestamp >= 0 ? { timestamp } : {}),
    ...(datatype === undefined ? {} : { datatype }),
    value: null,
    properties: {
      [METRIC_PROPERTIES.quality]: { type: "Int32", value: 0 },
      [METRIC_PROPERTIES.statusCode]: { type: "UInt32", value: QualityCodes.BadTypeMismatch },
      [METRIC_PROPERTIES.statusReason]: {
        type: "String",
        value: `value not publishable as ${String(metric.datatype)}: ${problem}`,
      },
    },
  };
}

/** OPC UA `BadEncodingLimitsExceeded`: the value is larger than the transport takes. */
const BAD_ENCODING_LIMITS_EXCEEDED = 0x80080000;

/**
 * `metric` as DATA sends it when its value does not fit the broker's Maximum Packet Size: null,
 * Quality bad, StatusCode `BadEncodingLimitsExceeded` with the reason, its historical flag kept,
 * so the host marks the metric bad instead of keeping its previous value good.
 */
function oversizedMetric(metric: SparkplugMetric, reason: string): SparkplugMetric {
  const { name, alias, timestamp, datatype, isHistorical } = metric;
  return {
    ...(name === undefined ? {} : { name }),
    ...(alias === undefined ? {} : { alias }),
    ...(timestamp === undefined ? {} : { timestamp }),
    ...(datatype === undefined ? {} : { datatype }),
    ...(isHistorical === true ? { isHistorical } : {}),
    value: null,
    // A birth's other properties (unit, range, description) stay: the host keeps the tag as defined.
    properties: {
      ...metric.properties,
      [METRIC_PROPERTIES.quality]: { type: "Int32", value: 0 },
      [METRIC_PROPERTIES.statusCode]: { type: "UInt32", value: BAD_ENCODING_LIMITS_EXCEEDED },
      [METRIC_PROPERTIES.statusReason]: { type: "String", value: reason },
    },
  };
}

/** The specification's Quality code (6.4.8.1) of a Kiln quality severity. */
function qualityCode(severity: Sample["quality"]["severity"]): number {
  return severity === "good" ? 192 : severity === "uncertain" ? 500 : 0;
}

/** Every key of {@link SparkplugEdgeNodeOptions}: any other is refused (a typo is not ignored). */
const EDGE_NODE_OPTION_KEYS: OptionKeys<SparkplugEdgeNodeOptions> = {
  system: true,
  brokerUrl: true,
  groupId: true,
  edgeNodeId: true,
  deviceId: true,
  primaryHostId: true,
  maxHostClockSkewMs: true,
  minRebirthIntervalMs: true,
  principal: true,
  bdSeqStore: true,
  reconnect: BACKOFF_OPTION_KEYS,
  mqtt: true,
  maxPendingCommands: true,
  maxMetricsPerCommand: true,
  maxPayloadBytes: true,
  brokerMaximumPacketSize: true,
  connectTimeoutMs: true,
  clock: true,
  random: true,
  storeAndForward: { path: true, journal: true, maxBytes: true, maxSamples: true, overflow: true, batchSamples: true },
  awaitHostAcks: true,
  ackOverdueMs: true,
};

/**
 * A Sparkplug B 3.0 edge node for one Kiln control system: the system is one Sparkplug device
 * (its machine), every tag a metric.
 *
 * - On each new MQTT session (clean, with NDEATH as its Will at QoS 1, not retained, carrying a
 *   bdSeq one more than the last): subscribe NCMD, DCMD (QoS 1) and the primary host's STATE,
 *   then publish NBIRTH (seq 0, bdSeq, `Node Control/Rebirth`) and DBIRTH (every tag with name,
 *   alias, datatype, current value, timestamp and properties), once the primary host is online.
 * - Then DDATA: each CVT change, by alias, with the sample's own timestamp and its quality
 *   (properties `Quality`/`StatusCode`/`StatusReason` when not good); seq 0–255 on every
 *   message but NDEATH.
 * - NCMD `Node Control/Rebirth` = true publishes the births again (same bdSeq, seq from 0);
 *   other NCMD metrics are dropped (`command-drop` `unknown-node-metric`) and audited.
 * - NBIRTH, DBIRTH and DDATA fit the broker's Maximum Packet Size (its MQTT 5 CONNACK, else
 *   `brokerMaximumPacketSize`): the largest values go as null and bad until they fit; a birth that
 *   still does not fit is retried, and a host that had this session's births is told (DDEATH, or
 *   NDEATH by the Will) (ADR 0043, amendment fix19s).
 * - DCMD writes go through `system.writeTag` as the configured principal: authorized, checked
 *   and audited by Kiln; refused ones never reach the PLC.
 * - Reconnects on the driver kit's backoff; `stop()` publishes DDEATH and NDEATH, then disconnects.
 *
 * - With `storeAndForward` (ADR 0031), what changes while the node cannot publish is kept in a
 *   bounded backlog (core's crash-safe `RecordJournal`, or memory) and sent after the next births
 *   as DDATA flagged `is_historical`, oldest first, alongside live data. Without it, changes
 *   meanwhile are counted ({@link SparkplugEdgeNodeHealth.samplesNotPublished}) and the next
 *   births carry the latest values. See docs/northbound/sparkplug.md for what is lost when.
 *
 * @example
 * const node = new SparkplugEdgeNode({
 *   system, brokerUrl: "mqtt://127.0.0.1:1883", groupId: "plant-1", edgeNodeId: "line-3",
 *   primaryHostId: "scada", principal: { id: "sparkplug-host", roles: ["operator"] },
 * });
 * await node.start();
 */
export class SparkplugEdgeNode {
  /** Events: link, host state, births, commands. Handlers are isolated from the node. */
  readonly events: EventBusView<SparkplugEdgeNodeEvents>;
  readonly #bus: EventBus<SparkplugEdgeNodeEvents>;
  readonly #options: SparkplugEdgeNodeOptions;
  readonly #system: ControlSystem;
  readonly #deviceId: string;
  readonly #principal: Principal;
  readonly #clock: Clock;
  readonly #dropAudit: CommandDropAudit;
  readonly #backoff: ReconnectBackoff;
  readonly #bdSeqStore: BdSeqStore;
  readonly #lifecycle: ConnectionLifecycle;
  readonly #takeover: SessionTakeover;
  readonly #bindings: readonly MetricBinding[];
  /** Metrics last sent as null because their value did not fit the broker's Maximum Packet Size: name → reason. */
  readonly #oversized = new Map<string, string>();
  /**
   * Metrics not sent at all, as they did not fit the broker's Maximum Packet Size even alone and
   * as null: name → reason. Named in `health().problems` ("data-size") until each was sent again
   * (whole or as null). Bounded by the number of metrics.
   */
  readonly #notSent = new Map<string, string>();
  /**
   * Per metric (tag name), the timestamp of the last sample counted in `metricsNotEncodable`: a
   * sample is counted once, however often it is encoded again (each rebirth, each try at fitting a
   * message to the broker's limit). Bounded by the number of metrics.
   */
  readonly #countedNotEncodable = new Map<string, number | undefined>();
  readonly #byName: ReadonlyMap<string, MetricBinding>;
  readonly #byAlias: ReadonlyMap<number, MetricBinding>;
  readonly #machineStateAlias: number;
  readonly #messageNumberAlias: number;
  readonly #topics: {
    readonly nbirth: string;
    readonly ndeath: string;
    readonly ncmd: string;
    readonly dbirth: string;
    readonly ddata: string;
    readonly ddeath: string;
    readonly dcmd: string;
    readonly state?: string;
  };
  #session: Session | undefined;
  #lastBdSeq: number | undefined;
  #bdSeqLoaded = false;
  /** No `bdSeqStore` given: the first bdSeq of the process is random (see `bdSeqStore`). */
  readonly #randomFirstBdSeq: boolean;
  #seq = 0;
  #host: {
    state: "online" | "offline" | "unknown";
    timestamp?: number;
    onlineTimestamp?: number;
    /** When (this node's clock) the STATE of `timestamp` was taken. */
    seenAt?: number;
  } = {
    state: "unknown",
  };
  #pending: Sample[] = [];
  #pendingMachineState: string | undefined;
  #flushScheduled = false;
  #disposers: Disposer[] = [];
  #started = false;
  #stopping = false;
  #problems = new Map<string, string>();
  #commandChain: Promise<void> = Promise.resolve();
  readonly #forward: ForwardSettings | undefined;
  #backlog: ForwardBacklog | undefined;
  /**
   * Every backlog operation (an append's start, drop, peek, release) runs on this chain, one at a
   * time. An append leaves the chain once handed to the journal, so the appends queued behind one
   * fsync share the next (the journal's group commit); releases by acknowledgements run off it.
   */
  #forwardChain: Promise<unknown> = Promise.resolve();
  /** Appends handed to the backlog and not yet done, and releases by acknowledgements: `stop()` waits for them. */
  readonly #forwardWork = new Set<Promise<void>>();
  /** Samples and bytes (record headers included) handed to the backlog and not yet fsynced: they count toward its limits. */
  #appending = { samples: 0, bytes: 0 };
  /** Samples handed to the backlog and not yet appended. */
  #storing = 0;
  #replaying = false;
  /** When the last births went out (monotonic clock), and the timer of a rebirth waiting for the interval. */
  #lastBirthAt: number | undefined;
  #rebirthTimer: TimerHandle | undefined;
  /** A primary host STATE held back as further ahead than maxHostClockSkewMs, and its recheck timer. */
  #deferredState:
    { session: Session; state: { online: boolean; timestamp: number }; readonly message: string } | undefined;
  #deferredTimer: TimerHandle | undefined;
  /** The id of the record the replay (without acks) is sending, until it is released. */
  /** The ids of the records a replay has published and not yet released, from the oldest through the newest. */
  #replayInFlight: { readonly from: number; readonly through: number } | undefined;
  #recovered: SparkplugStoreAndForwardHealth["recovered"];
  #counts = {
    births: 0,
    dataMessages: 0,
    metrics: 0,
    notPublished: 0,
    written: 0,
    refused: 0,
    rebirths: 0,
    rebirthsCoalesced: 0,
    malformed: 0,
    stored: 0,
    replayed: 0,
    forwardDropped: 0,
    forwardDroppedAfterPublish: 0,
    dropped: 0,
    unencodable: 0,
  };
  /** DCMD messages received and not yet handled (the one in hand included). */
  #commandsQueued = 0;
  // ---- host acknowledgements (ADR 0037) ----
  /** `awaitHostAcks` resolved: off, on, or auto (on from the first ack in this run). */
  readonly #ackMode: "off" | "on" | "auto";
  /**
   * True once the primary host acknowledged something (`"auto"` awaits from then on): in this run,
   * or in an earlier one as the marker beside the journal recalls (fix19g).
   */
  #hostAcks = false;
  /** `<journal path>.host-acks` with `"auto"` and a journal file (fix19g), and whether it already names the primary host. */
  #hostAcksMarker: { readonly file: string; saved: boolean } | undefined;
  /** Since when published samples wait for an ack without one coming (undefined: nothing waits). */
  #ackWaitSince: number | undefined;
  /** When the first numbered DDATA went out in this run (the `"auto"` no-ack problem counts from it). */
  #firstNumberedAt: number | undefined;
  /** Kept until acknowledged now: `awaitHostAcks` true, or `"auto"` once the host acknowledged. */
  get #awaitAcks(): boolean {
    return this.#ackMode === "on" || (this.#ackMode === "auto" && this.#hostAcks);
  }
  /** DDATA messages published in this MQTT session (live and historical): the numbers acks name. */
  #dataCount = 0;
  /** Bumped at every birth: what was sent before it and not acknowledged is sent again after it. */
  #epoch = 0;
  /**
   * The newest acknowledgement accepted, by epoch: the current one, and earlier ones while live
   * DDATA of theirs are still being appended (an ack can overtake the fsync of what it covers, and
   * a birth can come between them: the record is released when the journal has it, never sent
   * again to the next host).
   */
  readonly #ackedThrough = new Map<number, number>();
  #lastAckAt: number | undefined;
  /** Samples published live and not yet appended to the journal. */
  #storingSent = 0;
  #ackCounts = { accepted: 0, ignored: 0, refused: 0, samples: 0 };
  /**
   * `"auto"` before the first ack: samples of each numbered DDATA released at once in this epoch,
   * by message number, until an ack covers them or births end the epoch (then `released`).
   */
  #unconfirmed = { pending: [] as { message: number; samples: number }[], pendingSamples: 0, released: 0 };

  /**
   * Checks the options; connects nothing (see {@link SparkplugEdgeNode.start}).
   * @throws KilnValidationError `KILN_VALIDATION` for an invalid group, edge node, device or
   *   host id (empty, or holding `+`, `/`, `#`), a bad `reconnect` backoff, a missing principal,
   *   or bad `storeAndForward` options (each field named: `storeAndForward.maxSamples`...);
   *   `awaitHostAcks` without `storeAndForward` or without `primaryHostId` (path `awaitHostAcks`);
   *   a `brokerUrl` that is not a URL with an MQTT scheme and a host (`localhost:1883`); an option
   *   key the node does not know, also inside `reconnect` and `storeAndForward` (a typo is refused
   *   by its path, `storeAndForward.maxSampels`, not ignored); an `mqtt.protocolVersion` other
   *   than 4 or 5. Nothing is done before the check.
   */
  constructor(options: SparkplugEdgeNodeOptions) {
    checkOptionShape("Sparkplug edge node options", options, EDGE_NODE_OPTION_KEYS);
    this.#options = options;
    this.#system = options.system;
    this.#deviceId = options.deviceId ?? options.system.machineId;
    checkSparkplugIds(
      {
        groupId: options.groupId,
        edgeNodeId: options.edgeNodeId,
        deviceId: this.#deviceId,
        ...(options.primaryHostId === undefined ? {} : { primaryHostId: options.primaryHostId }),
      },
      "Sparkplug edge node options",
    );
    if (typeof options.principal?.id !== "string") {
      throw new KilnError(
        "KILN_VALIDATION",
        "Sparkplug edge node options: principal must be a Kiln Principal ({ id, roles })",
        {
          details: { issues: [{ path: "principal", message: "must be { id, roles }" }] },
        },
      );
    }
    this.#backoff = options.reconnect ?? DEFAULT_BACKOFF;
    checkBackoff(this.#backoff, "reconnect");
    this.#principal = {
      ...options.principal,
      source: options.principal.source ?? `sparkplug:${options.groupId}/${options.edgeNodeId}`,
    };
    this.#forward = options.storeAndForward === undefined ? undefined : forwardSettings(options.storeAndForward);
    checkMaxPayloadBytes("Sparkplug edge node options", options.maxPayloadBytes);
    checkMaxPayloadBytes("Sparkplug edge node options", options.brokerMaximumPacketSize, "brokerMaximumPacketSize");
    checkBrokerUrl("Sparkplug edge node options", options.brokerUrl);
    if (
      options.awaitHostAcks !== undefined &&
      typeof options.awaitHostAcks !== "boolean" &&
      options.awaitHostAcks !== "auto"
    )
      throw new KilnValidationError("Sparkplug edge node options", [
        { path: "awaitHostAcks", message: 'must be true, false or "auto"' },
      ]);
    if (options.awaitHostAcks === true || options.awaitHostAcks === "auto") {
      const issues: ValidationIssue[] = [];
      if (options.storeAndForward === undefined)
        issues.push({ path: "awaitHostAcks", message: "needs storeAndForward (the journal keeps what awaits an ack)" });
      if (options.primaryHostId === undefined)
        issues.push({ path: "awaitHostAcks", message: "needs primaryHostId (only the primary host's acks count)" });
      if (issues.length > 0) throw new KilnValidationError("Sparkplug edge node options", issues);
    }
    this.#ackMode =
      options.awaitHostAcks === true
        ? "on"
        : options.awaitHostAcks === "auto" ||
            (options.awaitHostAcks === undefined &&
              options.storeAndForward !== undefined &&
              options.primaryHostId !== undefined)
          ? "auto"
          : "off";
    const durations = durationIssues([
      ["minRebirthIntervalMs", options.minRebirthIntervalMs, 0],
      ["connectTimeoutMs", options.connectTimeoutMs, 1],
      ["ackOverdueMs", options.ackOverdueMs, 1],
    ]).concat(mqttTimingIssues(options.mqtt));
    if (durations.length > 0) throw new KilnValidationError("Sparkplug edge node options", durations);
    const skew = options.maxHostClockSkewMs;
    if (skew !== undefined && !(typeof skew === "number" && skew >= 0))
      throw new KilnValidationError("Sparkplug edge node options", [
        { path: "maxHostClockSkewMs", message: "must be a number of ms from 0 (Infinity: no check)" },
      ]);
    this.#clock = options.clock ?? new SystemClock();
    this.#dropAudit = new CommandDropAudit(this.#clock, (command, reason, messages) =>
      this.#auditDrops(command, reason, messages),
    );
    this.#bdSeqStore = options.bdSeqStore ?? memoryBdSeqStore();
    this.#randomFirstBdSeq = options.bdSeqStore === undefined;
    this.#bus = new EventBus<SparkplugEdgeNodeEvents>({ now: () => this.#clock.now() });
    this.events = this.#bus;
    this.#lifecycle = new ConnectionLifecycle({
      name: `sparkplug ${options.groupId}/${options.edgeNodeId}`,
      clock: this.#clock,
      ...(options.random === undefined ? {} : { random: options.random }),
    });
    this.#lifecycle.onStatusChange((change) => void this.#bus.publish("link-change", change));
    this.#takeover = new SessionTakeover(this.#clock, 2 * this.#backoff.maxDelayMs);

    // Aliases: 1..n in catalog order, then the machine state. Node metrics carry no alias
    // (Node Control/Rebirth must not have one: [tck-id-operational-behavior-data-commands-rebirth-name-aliases]).
    // Array tags (ADR 0038) are not published until Sparkplug's array datatypes are built: left
    // out of the births (their aliases stay reserved) and named in health().problems.
    const catalog = options.system.tags.list();
    this.#bindings = catalog.flatMap((tag, index) =>
      tag.arrayLength === undefined ? [{ tag, alias: index + 1, datatype: sparkplugDataTypeOfTag(tag.dataType) }] : [],
    );
    const arrays = catalog.filter((tag) => tag.arrayLength !== undefined).map((tag) => tag.name);
    if (arrays.length > 0) {
      this.#problems.set(
        "arrays",
        `array tags are not published (Sparkplug array datatypes are not supported yet, ADR 0038): ${arrays.join(", ")}`,
      );
    }
    this.#byName = new Map(this.#bindings.map((binding) => [binding.tag.name, binding]));
    this.#byAlias = new Map(this.#bindings.map((binding) => [binding.alias, binding]));
    this.#machineStateAlias = catalog.length + 1;
    this.#messageNumberAlias = catalog.length + 2;

    const ids = { groupId: options.groupId, edgeNodeId: options.edgeNodeId };
    const device = { ...ids, deviceId: this.#deviceId };
    this.#topics = {
      nbirth: sparkplugTopic({ type: "NBIRTH", ...ids }),
      ndeath: sparkplugTopic({ type: "NDEATH", ...ids }),
      ncmd: sparkplugTopic({ type: "NCMD", ...ids }),
      dbirth: sparkplugTopic({ type: "DBIRTH", ...device }),
      ddata: sparkplugTopic({ type: "DDATA", ...device }),
      ddeath: sparkplugTopic({ type: "DDEATH", ...device }),
      dcmd: sparkplugTopic({ type: "DCMD", ...device }),
      ...(options.primaryHostId === undefined
        ? {}
        : { state: sparkplugTopic({ type: "STATE", hostId: options.primaryHostId }) }),
    };
  }

  /** The Sparkplug alias of each tag's metric (1 to n, in catalog order). */
  get aliases(): ReadonlyMap<string, number> {
    return new Map(this.#bindings.map((binding) => [binding.tag.name, binding.alias]));
  }

  /**
   * Starts observing the system and connects to the broker. Resolves after the first connect
   * attempt, whatever its outcome: when the broker is unreachable the node goes on trying in the
   * background on its backoff (see {@link SparkplugEdgeNode.health} and the `link-change` event).
   * @throws KilnError `KILN_LIFECYCLE` when called twice; `KILN_VALIDATION` when the bdSeq store
   *   holds a bad value; with a store-and-forward `path`, `KILN_JOURNAL_LOCKED` (retryable) when
   *   another live journal has the file open, `KILN_JOURNAL_FAILED` when it cannot be opened.
   */
  async start(): Promise<void> {
    if (this.#started)
      throw new KilnError("KILN_LIFECYCLE", "This Sparkplug edge node was already started; make a new one.");
    this.#started = true;
    // Observing first (fix19g, adv19f LOW-1): a change made while the journal opens is kept; its
    // append waits on the forward chain behind the open.
    this.#disposers.push(this.#system.cvt.observeAll((change) => this.#onChange(change)));
    this.#disposers.push(
      this.#system.bus.on("machine-state-change", (event) => {
        this.#pendingMachineState = event.to;
        this.#scheduleFlush();
      }),
    );
    const forward = this.#forward;
    if (forward !== undefined) {
      try {
        await this.#onForward(() => this.#openBacklog(forward));
      } catch (error) {
        for (const dispose of this.#disposers.splice(0)) dispose();
        throw error;
      }
    }
    try {
      await this.#lifecycle.connect((signal) => this.#open(signal));
    } catch (error) {
      if (this.#stopping) return;
      if (KilnError.is(error, "KILN_AUTHENTICATION_FAILED") || KilnError.is(error, "KILN_VALIDATION")) throw error;
      void this.#reconnect(`first connect failed: ${(error as Error).message}`);
    }
  }

  /** Resolves when the node next has a live broker session (at once when it has). */
  whenConnected(signal?: AbortSignal): Promise<void> {
    return this.#lifecycle.whenConnected(signal);
  }

  /**
   * Stops: publishes DDEATH and NDEATH when births are out (an intentional disconnect announces
   * itself: [tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath]), disconnects,
   * and stops observing the system. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#lifecycle.close();
    this.#stopping = true;
    if (this.#rebirthTimer !== undefined) this.#clock.clearTimeout(this.#rebirthTimer);
    this.#rebirthTimer = undefined;
    this.#dropDeferredState();
    for (const dispose of this.#disposers.splice(0)) dispose();
    await this.#commandChain;
    await this.#dropAudit.flush();
    await this.#lifecycle.close(async () => {
      const session = this.#session;
      this.#session = undefined;
      if (session === undefined) return;
      session.closing = true;
      await this.#goodbye(session, session.born);
    });
    // Commands dropped during the goodbye are audited too.
    await this.#dropAudit.flush();
    // Samples waiting to be stored are stored; the backlog stays on disk for the next start.
    await this.#forwardChain;
    await Promise.all([...this.#forwardWork]);
    // An in-memory backlog ends with the node: what it still holds is lost, and reported so.
    const backlog = this.#backlog;
    // Lost is what no ack covered: records an ack covered can still be held, behind an older one
    // not yet acknowledged (released oldest first); the host stored them (fix19m).
    const lost = backlog === undefined || backlog.durable ? 0 : this.#unacknowledged(backlog);
    if (lost > 0)
      this.#drop(
        lost,
        "stopped",
        `stop(): the in-memory store-and-forward backlog still held ${lost} samples (never sent${this.#awaitAcks ? ", or sent and not acknowledged" : ""}); they are discarded (give storeAndForward a path to keep them across restarts)`,
      );
    await backlog?.close().catch(() => undefined);
  }

  /**
   * Ends a session: DDEATH (when `devices`) and NDEATH, then DISCONNECT, each bounded in time —
   * MQTT.js holds a publish on a link that died unnoticed until a reconnect that will not come.
   * When the goodbye cannot be sent, the broker publishes the Will (the same NDEATH) instead.
   */
  async #goodbye(session: Session, devices: boolean): Promise<void> {
    const client = session.client;
    const bounded = (work: Promise<unknown>): Promise<boolean> => boundedGoodbye(work, this.#clock);
    let sent = client.connected;
    // Commands first: once the broker acknowledges the UNSUBSCRIBE, every NCMD/DCMD it routed to
    // this session has been sent ahead of that acknowledgement on this connection and seen here
    // (dropped as session-closing, counted, audited); later ones go to no session of the node and
    // their sender is told (MQTT 5 reason 16). Without it a command routed just before the
    // DISCONNECT was lost with the connection, unseen.
    if (sent) sent = await bounded(client.unsubscribeAsync([this.#topics.ncmd, this.#topics.dcmd]));
    if (sent && devices) {
      const ddeath = encodePayload({ timestamp: this.#clock.now(), seq: this.#nextSeq(), metrics: [] });
      sent = await bounded(client.publishAsync(this.#topics.ddeath, Buffer.from(ddeath), { qos: 0 }));
    }
    if (sent)
      sent = await bounded(
        client.publishAsync(this.#topics.ndeath, Buffer.from(this.#deathPayload(session.bdSeq)), { qos: 1 }),
      );
    await endSession(client, this.#clock, sent);
  }

  /** Stops the node. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** The node's state: link, primary host, publishing, counters, problems. */
  health(): SparkplugEdgeNodeHealth {
    const session = this.#session;
    const primaryHostId = this.#options.primaryHostId;
    const problems = [...this.#problems.values()];
    // A STATE held back as too far ahead is a problem while it is held and would change what the node does once
    // followed: an offline one (a spoof 10 years ahead, or a host far ahead saying it went offline; before, only an
    // event), or an online one while the host is not online (ADR 0043, amendment fix19e).
    const held = this.#deferredState;
    if (held !== undefined && (!held.state.online || this.#host.state !== "online")) problems.push(held.message);
    if (this.#lifecycle.status !== "connected" && this.#started && !this.#stopping) {
      problems.push(
        `broker link ${this.#lifecycle.status}${this.#lifecycle.reason ? `: ${this.#lifecycle.reason}` : ""}`,
      );
    }
    const takenOver = this.#takeover.problem();
    if (takenOver !== undefined && this.#lifecycle.status === "connected") problems.push(takenOver);
    const ackProblem = this.#ackProblem();
    if (ackProblem !== undefined) problems.push(ackProblem);
    if (primaryHostId !== undefined && this.#host.state !== "online" && this.#started) {
      problems.push(
        `primary host ${primaryHostId} is ${this.#host.state}: nothing is published${this.#forward === undefined ? "" : " (changes are stored to forward later)"}`,
      );
    }
    return {
      link: this.#lifecycle.status,
      ...(this.#lifecycle.reason === undefined ? {} : { linkReason: this.#lifecycle.reason }),
      ...(primaryHostId === undefined
        ? {}
        : {
            primaryHost: {
              id: primaryHostId,
              state: this.#host.state,
              ...(this.#host.timestamp === undefined ? {} : { timestamp: this.#host.timestamp }),
            },
          }),
      publishing: session?.born === true,
      ...(this.#lastBdSeq === undefined ? {} : { bdSeq: this.#lastBdSeq }),
      published: {
        births: this.#counts.births,
        dataMessages: this.#counts.dataMessages,
        metrics: this.#counts.metrics,
      },
      samplesNotPublished: this.#counts.notPublished,
      ...(this.#forward === undefined ? {} : { storeAndForward: this.#forwardHealth(this.#forward) }),
      commands: {
        written: this.#counts.written,
        refused: this.#counts.refused,
        rebirths: this.#counts.rebirths,
        rebirthsCoalesced: this.#counts.rebirthsCoalesced,
        malformed: this.#counts.malformed,
        dropped: this.#counts.dropped,
      },
      metricsNotEncodable: this.#counts.unencodable,
      problems,
    };
  }

  /**
   * Acknowledgements overdue (amendment fix19b of ADR 0043, review adv19z LOW-2): published
   * samples waiting longer than `ackOverdueMs` for one (the host may be gone without its Will);
   * or, with `"auto"`, a primary host that acknowledged nothing that long after the first DDATA.
   */
  #ackProblem(): string | undefined {
    if (this.#ackMode === "off" || this.#stopping) return undefined;
    const bound = this.#options.ackOverdueMs ?? DEFAULT_ACK_OVERDUE_MS;
    const now = this.#clock.now();
    const host = this.#options.primaryHostId!;
    if (!this.#awaitAcks) {
      if (this.#firstNumberedAt === undefined || now - this.#firstNumberedAt <= bound) return undefined;
      return `primary host ${host} has acknowledged nothing in ${now - this.#firstNumberedAt} ms since the first DDATA (awaitHostAcks "auto": not a Kiln host, or one that does not acknowledge): data is released once published, so what goes out while the host is gone without its Will (a broker and host crashing together) is lost (${this.#unconfirmed.released + this.#unconfirmed.pendingSamples} samples released unconfirmed so far: acknowledgement.samplesUnconfirmed)`;
    }
    const backlog = this.#backlog;
    // While the host is shown offline (or unknown) nothing is published and no acknowledgement is due: the host-state
    // problem says why. Once it is back, the wait counts from when it was seen online (adv19j LOW-2, fix19i).
    if (this.#host.state !== "online" || this.#ackWaitSince === undefined) return undefined;
    const waiting = Math.max(this.#ackWaitSince, this.#host.seenAt ?? this.#ackWaitSince);
    if (backlog === undefined || now - waiting <= bound) return undefined;
    const tally = backlog.tally(this.#epoch);
    const samples = tally.sentSamples + this.#storingSent;
    if (samples === 0) return undefined;
    return `acknowledgements from primary host ${host} overdue: none for ${now - waiting} ms (ackOverdueMs ${bound}) while ${samples} published samples (${tally.sentRecords} records) await one; they are kept and sent again to the next host (the host may be gone without its Will)`;
  }

  /** Samples the backlog holds that no host acknowledged (all of them when not awaiting acks). */
  #unacknowledged(backlog: ForwardBacklog): number {
    if (!this.#awaitAcks) return backlog.samples;
    const tally = backlog.tally(this.#epoch);
    return tally.unsentSamples + tally.sentSamples;
  }

  #forwardHealth(forward: ForwardSettings): SparkplugStoreAndForwardHealth {
    const backlog = this.#backlog;
    const oldest = backlog?.oldestTimestamp;
    const tally = this.#awaitAcks ? backlog?.tally(this.#epoch) : undefined;
    return {
      durable: backlog?.durable ?? (forward.path !== undefined || forward.journal !== undefined),
      backlogSamples: (tally === undefined ? (backlog?.samples ?? 0) : tally.unsentSamples) + this.#storing,
      backlogRecords: tally === undefined ? (backlog?.records ?? 0) : tally.unsentRecords,
      backlogBytes: backlog?.bytes ?? 0,
      maxBytes: forward.maxBytes,
      maxSamples: forward.maxSamples,
      ...(oldest === undefined ? {} : { oldestAgeMs: Math.max(0, this.#clock.now() - oldest) }),
      replaying: this.#replaying,
      samplesStored: this.#counts.stored,
      samplesReplayed: this.#counts.replayed,
      samplesDropped: this.#counts.forwardDropped,
      samplesDroppedAfterPublish: this.#counts.forwardDroppedAfterPublish,
      ...(this.#recovered === undefined ? {} : { recovered: this.#recovered }),
      ...(this.#ackMode !== "off"
        ? {
            acknowledgement: {
              awaiting: this.#awaitAcks,
              unacknowledgedSamples: (tally?.sentSamples ?? 0) + this.#storingSent,
              unacknowledgedRecords: tally?.sentRecords ?? 0,
              ...(this.#lastAckAt === undefined
                ? {}
                : { lastAckAgeMs: Math.max(0, this.#clock.now() - this.#lastAckAt) }),
              samplesAcknowledged: this.#ackCounts.samples,
              samplesUnconfirmed: this.#unconfirmed.released + this.#unconfirmed.pendingSamples,
              acks: {
                accepted: this.#ackCounts.accepted,
                ignored: this.#ackCounts.ignored,
                refused: this.#ackCounts.refused,
              },
            },
          }
        : {}),
    };
  }

  // ---- session -------------------------------------------------------------------------------

  async #nextBdSeq(): Promise<number> {
    if (!this.#bdSeqLoaded) {
      this.#lastBdSeq = await this.#bdSeqStore.load();
      this.#bdSeqLoaded = true;
    }
    const first = (): number =>
      this.#randomFirstBdSeq ? Math.min(255, Math.floor((this.#options.random ?? Math.random)() * 256)) : 0;
    const bdSeq = this.#lastBdSeq === undefined ? first() : (this.#lastBdSeq + 1) % 256;
    this.#lastBdSeq = bdSeq;
    try {
      await this.#bdSeqStore.save(bdSeq);
      this.#problems.delete("bdseq");
    } catch (error) {
      // Still a new number for this process; only a restart could repeat it. Say so, go on.
      this.#problems.set("bdseq", `bdSeq ${bdSeq} could not be saved: ${(error as Error).message}`);
    }
    return bdSeq;
  }

  #deathPayload(bdSeq: number): Uint8Array {
    // Fixed content (an Int64 bdSeq from 0 to 255): always encodable.
    return encodePayload({
      timestamp: this.#clock.now(),
      metrics: [{ name: BDSEQ_METRIC, timestamp: this.#clock.now(), datatype: "Int64", value: bdSeq }],
    });
  }

  async #open(signal: AbortSignal): Promise<void> {
    const bdSeq = await this.#nextBdSeq();
    const connect = await mqttConnect();
    const client = connect(
      this.#options.brokerUrl,
      sessionOptions(this.#options.mqtt ?? {}, {
        ...(this.#options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.#options.connectTimeoutMs }),
        will: { topic: this.#topics.ndeath, payload: Buffer.from(this.#deathPayload(bdSeq)), qos: 1, retain: false },
      }),
    );
    const session: Session = { client, bdSeq, born: false, closing: false };
    try {
      await raceAbort(
        new Promise<void>((resolve, reject) => {
          const onError = (error: Error & { code?: number }): void => {
            cleanup();
            // CONNACK 4/5 (3.1.1) or 0x86/0x87 (5.0): bad credentials or not authorized.
            const refused = error.code !== undefined && [4, 5, 0x86, 0x87].includes(error.code);
            reject(
              new KilnError(
                refused ? "KILN_AUTHENTICATION_FAILED" : "KILN_CONNECTION_FAILED",
                `MQTT connect to ${redactedBrokerUrl(this.#options.brokerUrl)} failed: ${withoutBrokerSecret(error.message, this.#options.brokerUrl)}`,
                {
                  retryable: !refused,
                  cause: error,
                },
              ),
            );
          };
          const onClose = (): void => {
            cleanup();
            reject(
              new KilnError(
                "KILN_CONNECTION_FAILED",
                `MQTT connect to ${redactedBrokerUrl(this.#options.brokerUrl)} failed: connection closed`,
                { retryable: true },
              ),
            );
          };
          const onConnect = (connack?: { properties?: { maximumPacketSize?: number } }): void => {
            cleanup();
            const maximum = connack?.properties?.maximumPacketSize;
            const configured = this.#options.brokerMaximumPacketSize;
            if (typeof maximum === "number" && maximum > 0) {
              session.brokerMaxPacketSize = maximum;
              session.packetLimitSource = "MQTT 5 CONNACK";
            } else if (configured !== undefined) {
              session.brokerMaxPacketSize = configured;
              session.packetLimitSource = "the brokerMaximumPacketSize option";
            }
            resolve();
          };
          const cleanup = (): void => {
            client.off("error", onError);
            client.off("close", onClose);
            client.off("connect", onConnect);
          };
          client.on("error", onError);
          client.on("close", onClose);
          client.on("connect", onConnect);
        }),
        signal,
        "Sparkplug connect",
      );
      // Each session waits for an online STATE of its own ([tck-id-operational-behavior-edge-node-birth-sequence-wait]);
      // the timestamps seen before stay, to tell a current STATE from an old one. The newest STATE
      // followed said offline: the host is offline until a newer one is taken, not unknown (a spoof
      // that silences the node shows as offline; amendment fix19i of ADR 0043, adv19h LOW-3).
      const followedOffline = this.#host.timestamp !== undefined && this.#host.timestamp !== this.#host.onlineTimestamp;
      this.#host = { ...this.#host, state: followedOffline ? "offline" : "unknown" };
      this.#session = session;
      this.#takeover.follow(client, this.#options.mqtt?.clientId);
      this.#dataCount = 0;
      client.on("message", (topic, payload, packet) => this.#onMessage(session, topic, payload, packet.retain));
      client.on("error", () => undefined);
      client.once("close", () => this.#onSessionLost(session));
      // [tck-id-message-flow-edge-node-ncmd-subscribe], [tck-id-message-flow-device-dcmd-subscribe]: QoS 1.
      // MQTT 5 Retain As Published: a command published retained while the node is subscribed
      // reaches it with its retain flag (MQTT 3.1.1 brokers clear the flag for subscribers already
      // there, so such a command cannot be told from a live one and is handled; issue 19).
      const command = this.#options.mqtt?.protocolVersion === 5 ? { qos: 1 as const, rap: true } : { qos: 1 as const };
      const filters: Record<string, { qos: 1; rap?: boolean }> = {
        [this.#topics.ncmd]: command,
        [this.#topics.dcmd]: command,
      };
      if (this.#topics.state !== undefined) filters[this.#topics.state] = { qos: 1 };
      const downgraded = await raceAbort(
        subscribeChecked(client, filters, "Sparkplug edge node session"),
        signal,
        "Sparkplug subscribe",
      );
      if (downgraded.length > 0)
        this.#problems.set(
          "subscription-qos",
          `the broker granted a lower QoS than asked for ${downgraded.join(", ")}: a command or STATE it drops is not seen`,
        );
      else this.#problems.delete("subscription-qos");
    } catch (error) {
      session.closing = true;
      if (this.#session === session) this.#session = undefined;
      client.end(true);
      throw error;
    }
    // Without a primary host, births go out at once; with one, when its STATE says online (the
    // retained STATE arrives right after the subscription).
    if (this.#topics.state === undefined || this.#host.state === "online") this.#birth(session, "session");
  }

  #onSessionLost(session: Session): void {
    // Another edge node (or any client) with this client id takes the session over at every
    // reconnect: that loss proves nothing about the broker, so the backoff grows (adv19p M2).
    // A packet of ours over the broker's likely limit just before the loss is named too, never
    // hidden behind a takeover suspicion (adv19r M2).
    const tooLarge = this.#likelyTooLarge(session);
    const takenOver =
      session.closing || this.#session !== session
        ? undefined
        : this.#takeover.lost(session.client, tooLarge === "" ? undefined : tooLarge);
    if (takenOver !== undefined) this.#dropSession(session, takenOver, true);
    else this.#dropSession(session, `connection to the broker lost${tooLarge}`);
  }

  /**
   * Ends `session` without DISCONNECT (so the broker publishes its Will, the NDEATH) and
   * reconnects, with `reason` as the link's reason.
   */
  #dropSession(session: Session, reason: string, unprovenLoss = false): void {
    if (session.closing || this.#session !== session) return;
    this.#session = undefined;
    session.closing = true;
    session.client.end(true);
    if (this.#stopping) return;
    void this.#reconnect(reason, false, unprovenLoss);
  }

  /**
   * The likely cause of a session the broker ended, when the facts point to one: no packet limit
   * known (MQTT 3.1.1 announces none, nor was `brokerMaximumPacketSize` given), and the link died
   * within {@link TOO_LARGE_WINDOW_MS} of the largest message of the session (larger than all the
   * broker took before it; a broker drops a client whose packet exceeds its limit). Else "".
   */
  #likelyTooLarge(session: Session): string {
    const last = session.largestPublish;
    if (session.brokerMaxPacketSize !== undefined || last === undefined) return "";
    if (this.#clock.now() - last.at > TOO_LARGE_WINDOW_MS) return "";
    return ` right after a ${last.bytes}-byte ${last.what}, the largest the session sent: likely over the broker's packet limit (mosquitto max_packet_size); set brokerMaximumPacketSize (MQTT 3.1.1 brokers announce none) so values too large are sent as null and bad instead`;
  }

  /** Publishes one Sparkplug message (QoS 0, not retained) and notes its size for {@link #likelyTooLarge}. */
  #publish(session: Session, what: string, topic: string, bytes: Uint8Array): void {
    const size = publishPacketSize(topic, bytes.length);
    if (size > (session.largestPublish?.bytes ?? 0))
      session.largestPublish = { what, bytes: size, at: this.#clock.now() };
    session.client.publish(topic, Buffer.from(bytes), { qos: 0, retain: false });
  }

  #reconnect(reason: string, immediately = false, unprovenLoss = false): Promise<void> {
    return this.#lifecycle.reconnect({
      reason,
      backoff: this.#backoff,
      delayFirst: !immediately,
      unprovenLoss,
      attempt: (signal) => this.#open(signal),
      onAttemptFailed: () => "retry",
    });
  }

  // ---- births and data -----------------------------------------------------------------------

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) % 256;
    return this.#seq;
  }

  /**
   * The payload's bytes; never throws. A metric that cannot be encoded is sent as null with
   * Quality bad and the reason (docs/northbound/sparkplug.md), never dropping the message nor
   * escaping into the caller (a CVT observer, a timer, a message handler). Undefined only when
   * even that fails; the message is then not sent and health says why.
   */
  /** The {@link MESSAGE_NUMBER_METRIC} of a DBIRTH (named) or DDATA (alias only). */
  #messageNumber(value: number, timestamp: number, birth: boolean): SparkplugMetric {
    return {
      ...(birth ? { name: MESSAGE_NUMBER_METRIC } : {}),
      alias: this.#messageNumberAlias,
      timestamp,
      datatype: "UInt64",
      value,
      isTransient: true,
    };
  }

  #encode(payload: SparkplugPayload, omitDatatype = false): Uint8Array | undefined {
    try {
      return encodePayload(payload, { omitDatatype });
    } catch (error) {
      const metrics = payload.metrics.map((metric) => {
        try {
          encodePayload({ metrics: [metric] }, { omitDatatype });
          return metric;
        } catch (metricError) {
          this.#countNotEncodable(this.#metricName(metric), metric.timestamp);
          return unencodableMetric(metric, (metricError as Error).message);
        }
      });
      try {
        return encodePayload({ ...payload, metrics }, { omitDatatype });
      } catch {
        this.#counts.unencodable++;
        this.#problems.set("encode", `a message could not be encoded and was not sent: ${(error as Error).message}`);
        return undefined;
      }
    }
  }

  /**
   * The bytes of a DDATA payload (live or replayed), checked against the broker's Maximum Packet
   * Size (announced, else `brokerMaximumPacketSize`) as births are ({@link #fit}): a packet over it would end the session at the broker (and the
   * next one likewise). Over it, the largest metrics are sent as null and bad with the reason
   * ({@link oversizedMetric}) until the message fits: each counted (`metricsNotEncodable`) and
   * named in `health().problems` until it is published whole again. Undefined (not sent, said in
   * health) only when even the message of nulls does not fit.
   *
   * The message takes its `seq` here, and only once its bytes exist: a DDATA that is not sent
   * leaves `seq` where it was, so the host sees no gap and asks for no rebirth (ADR 0043,
   * amendment 19u).
   */
  #encodeData(session: Session, unnumbered: Omit<SparkplugPayload, "seq">): Uint8Array | undefined {
    const seq = (this.#seq + 1) % 256;
    const bytes = this.#fit(session, this.#topics.ddata, { ...unnumbered, seq }, true);
    if (bytes !== undefined) this.#seq = seq;
    return bytes;
  }

  /**
   * The bytes of a DDATA or DBIRTH payload fitted to the broker's Maximum Packet Size (the one
   * mechanism for both, ADR 0043 amendment fix19s): the largest values are sent as null and bad
   * `BadEncodingLimitsExceeded` with the reason until the packet fits (a birth keeps each
   * metric's name, datatype and other properties). When even that does not fit: undefined for a
   * DDATA (not sent, said in health), the smallest bytes for a birth (the birth says its size).
   */
  #fit(session: Session, topic: string, payload: SparkplugPayload, omitDatatype: boolean): Uint8Array | undefined {
    const bytes = this.#encode(payload, omitDatatype);
    const limit = session.brokerMaxPacketSize;
    const fits = (encoded: Uint8Array): boolean => publishPacketSize(topic, encoded.length) <= limit!;
    if (bytes === undefined || limit === undefined || fits(bytes)) {
      if (bytes !== undefined) this.#publishedWhole(payload.metrics);
      return bytes;
    }
    const sizeOf = (metric: SparkplugMetric): number => {
      try {
        return encodePayload({ metrics: [metric] }, { omitDatatype }).length;
      } catch {
        return 0;
      }
    };
    // Largest saving first (a birth metric's properties stay whatever is done); the message number
    // (ADR 0037) is never replaced, nor a value whose null, with its reason and quality, is no
    // smaller than the value itself (it would grow the message and blame a value that was not
    // too large; adversarial review 19r).
    const order = payload.metrics
      .flatMap((metric, index) => {
        if (metric.alias === this.#messageNumberAlias) return [];
        const whole = sizeOf(metric);
        const size = whole - sizeOf({ ...metric, value: null });
        const reason = `value of ${size} bytes too large for the broker's Maximum Packet Size (${limit} bytes, ${session.packetLimitSource}): not sent`;
        const replacement = oversizedMetric(metric, reason);
        const saving = whole - sizeOf(replacement);
        return saving > 0 ? [{ index, reason, replacement, saving }] : [];
      })
      .sort((a, b) => b.saving - a.saving);
    const metrics = [...payload.metrics];
    const replaced = new Map<number, string>();
    let fitted: Uint8Array | undefined = bytes;
    for (const { index, reason, replacement } of order) {
      if (fits(fitted)) break;
      metrics[index] = replacement;
      replaced.set(index, reason);
      fitted = this.#encode({ ...payload, metrics }, omitDatatype);
      if (fitted === undefined) return undefined;
    }
    if (!fits(fitted) && topic === this.#topics.ddata) {
      // Not sent: nothing is counted or named for this try (the caller splits the message, and
      // names a metric that does not fit alone: #notSent).
      return undefined;
    }
    // Counted and named only for the message that goes out (a birth that does not fit is said,
    // with its size, by the birth: "birth-size").
    for (const [index, reason] of replaced) {
      const original = payload.metrics[index]!;
      const name = this.#metricName(original);
      this.#countNotEncodable(name, original.timestamp);
      this.#oversized.set(name, reason);
      this.#notSent.delete(name);
    }
    this.#publishedWhole(payload.metrics.filter((_, index) => !replaced.has(index)));
    this.#sayOversized();
    return fitted;
  }

  /** Counts the sample of metric `name` at `timestamp` in `metricsNotEncodable` unless it was counted already. */
  #countNotEncodable(name: string, timestamp: number | undefined): void {
    if (this.#countedNotEncodable.has(name) && this.#countedNotEncodable.get(name) === timestamp) return;
    this.#countedNotEncodable.set(name, timestamp);
    this.#counts.unencodable++;
  }

  /** The tag name of a DATA metric (by its alias), else its alias in words. */
  #metricName(metric: SparkplugMetric): string {
    const alias = metric.alias === undefined ? undefined : Number(metric.alias);
    if (alias === this.#machineStateAlias) return MACHINE_STATE_METRIC;
    return (
      (alias === undefined ? undefined : this.#byAlias.get(alias)?.tag.name) ?? metric.name ?? `alias ${String(alias)}`
    );
  }

  /** Metrics published with their values: no longer named as too large, nor as not sent. */
  #publishedWhole(metrics: readonly SparkplugMetric[]): void {
    if (this.#oversized.size === 0 && this.#notSent.size === 0) return;
    for (const metric of metrics) {
      const name = this.#metricName(metric);
      this.#oversized.delete(name);
      this.#notSent.delete(name);
    }
    this.#sayOversized();
  }

  /** The "data-size" problem, from the metrics last sent as null and those not sent; cleared when there are none. */
  #sayOversized(): void {
    const said: string[] = [];
    const notSent = [...this.#notSent.keys()];
    if (notSent.length > 0)
      said.push(
        `${notSent.length} metric(s) not sent, too large for the broker's Maximum Packet Size even alone and without their value: ${notSent.slice(0, 10).join(", ")}${notSent.length > 10 ? ", …" : ""} (${this.#notSent.get(notSent[0]!)!})`,
      );
    const names = [...this.#oversized.keys()];
    if (names.length > 0)
      said.push(
        `${names.length} metric(s) last sent as null and bad, their value too large for the broker's Maximum Packet Size: ${names.slice(0, 10).join(", ")}${names.length > 10 ? ", …" : ""} (${this.#oversized.get(names[0]!)!})`,
      );
    if (said.length === 0) this.#problems.delete("data-size");
    else
      this.#problems.set(
        "data-size",
        `${said.join("; ")}; raise the broker's limit (mosquitto max_packet_size) or shorten the values`,
      );
  }

  #propertiesOf(
    sample: Sample | undefined,
    binding: MetricBinding | undefined,
    birth: boolean,
  ): SparkplugPropertySet | undefined {
    // The DATA hot path: a plain good sample (code 0) has no properties, and allocates nothing
    // here. A good one with a code of its own (GoodLocalOverride...) carries it.
    if (!birth && sample !== undefined && sample.quality.severity === "good" && sample.quality.code === 0)
      return undefined;
    const properties: Record<string, SparkplugPropertySet[string]> = {};
    const quality = sample?.quality ?? {
      severity: "bad" as const,
      code: QualityCodes.BadWaitingForInitialData,
      reason: "no value yet",
    };
    if (birth || quality.severity !== "good" || quality.code !== 0) {
      properties[METRIC_PROPERTIES.quality] = { type: "Int32", value: qualityCode(quality.severity) };
      properties[METRIC_PROPERTIES.statusCode] = { type: "UInt32", value: quality.code >>> 0 };
      if (quality.reason !== undefined)
        properties[METRIC_PROPERTIES.statusReason] = { type: "String", value: quality.reason };
    }
    if (birth && binding !== undefined) {
      const tag = binding.tag;
      if (tag.unit !== undefined) properties[METRIC_PROPERTIES.engUnit] = { type: "String", value: tag.unit };
      if (tag.range !== undefined) {
        properties[METRIC_PROPERTIES.engLow] = { type: "Double", value: tag.range.min };
        properties[METRIC_PROPERTIES.engHigh] = { type: "Double", value: tag.range.max };
      }
      if (tag.description !== undefined)
        properties[METRIC_PROPERTIES.description] = { type: "String", value: tag.description };
      properties[METRIC_PROPERTIES.writable] = { type: "Boolean", value: tag.access === "readwrite" };
    }
    return Object.keys(properties).length === 0 ? undefined : properties;
  }

  /** A device metric of `sample` (or of no value yet), checked so one bad value cannot spoil a message. */
  #metricOf(binding: MetricBinding, sample: Sample | undefined, birth: boolean): SparkplugMetric {
    const properties = this.#propertiesOf(sample, binding, birth);
    // Built field by field, not by spreads: one object per metric on the DATA hot path.
    const metric: { -readonly [K in keyof SparkplugMetric]: SparkplugMetric[K] } = {};
    if (birth) metric.name = binding.tag.name;
    metric.alias = binding.alias;
    if (sample !== undefined && sample.timestamp >= 0) metric.timestamp = Math.floor(sample.timestamp);
    metric.datatype = binding.datatype;
    // Only scalar tags are bound (array tags are left out in the constructor).
    metric.value = (sample?.value ?? null) as TagScalarValue | null;
    if (properties !== undefined) metric.properties = properties;
    try {
      if (sample !== undefined && sample.timestamp < 0)
        throw new Error("a sample timestamp before 1970 has no Sparkplug form");
      // Kiln's tag types all map to scalar Sparkplug types: checked without encoding (the hot path).
      const problem = sample?.value == null ? undefined : scalarValueProblem(binding.datatype, sample.value);
      if (problem !== undefined) throw new Error(problem);
      return metric;
    } catch (error) {
      // A value the Sparkplug type cannot hold: sent as null and bad, never as a wrong good value.
      const reason = `value not publishable as ${binding.datatype}: ${(error as Error).message}`;
      this.#countNotEncodable(binding.tag.name, sample?.timestamp);
      return {
        ...(birth ? { name: binding.tag.name } : {}),
        alias: binding.alias,
        ...(sample === undefined || sample.timestamp < 0 ? {} : { timestamp: Math.floor(sample.timestamp) }),
        datatype: binding.datatype,
        value: null,
        properties: {
          [METRIC_PROPERTIES.quality]: { type: "Int32", value: 0 },
          [METRIC_PROPERTIES.statusCode]: { type: "UInt32", value: QualityCodes.BadTypeMismatch },
          [METRIC_PROPERTIES.statusReason]: { type: "String", value: reason },
        },
      };
    }
  }

  #birth(session: Session, reason: "session" | "rebirth"): void {
    if (this.#stopping || session.closing) return;
    // This birth answers every rebirth request waiting for the interval.
    if (this.#rebirthTimer !== undefined) {
      this.#clock.clearTimeout(this.#rebirthTimer);
      this.#rebirthTimer = undefined;
    }
    this.#lastBirthAt = this.#elapsed();
    // Changes before the births: stored as history with store-and-forward; else only in the births
    // (each tag's current value) and counted.
    if (this.#forward !== undefined) this.#store(this.#pending, this.#pendingMachineState);
    else this.#counts.notPublished += this.#pending.length;
    this.#pending = [];
    this.#pendingMachineState = undefined;
    const now = this.#clock.now();
    const nodeMetrics: SparkplugMetric[] = [
      { name: BDSEQ_METRIC, timestamp: now, datatype: "Int64", value: session.bdSeq },
      { name: REBIRTH_METRIC, timestamp: now, datatype: "Boolean", value: false },
    ];
    if (this.#ackMode !== "off")
      nodeMetrics.push({ name: AWAIT_ACKS_METRIC, timestamp: now, datatype: "UInt64", value: this.#dataCount });
    const nbirth = this.#encode({ timestamp: now, seq: 0, metrics: nodeMetrics });
    const metrics = this.#bindings.map((binding) =>
      this.#metricOf(binding, this.#system.cvt.get(binding.tag.name), true),
    );
    metrics.push({
      name: MACHINE_STATE_METRIC,
      alias: this.#machineStateAlias,
      timestamp: now,
      datatype: "String",
      value: this.#system.machineState,
    });
    if (this.#ackMode !== "off") metrics.push(this.#messageNumber(this.#dataCount, now, true));
    // [tck-id-topics-nbirth-seq-num]: NBIRTH has seq 0, the DBIRTH 1; taken only once sent.
    // The DBIRTH's values too large for the broker go as null and bad, as in DDATA (amendment fix19s).
    const dbirth = this.#fit(session, this.#topics.dbirth, { timestamp: now, seq: 1, metrics }, false);
    // A birth larger than the broker takes would end the session at the broker, and the next
    // birth likewise: not sent, said in health, tried again until it fits.
    const limit = session.brokerMaxPacketSize;
    for (const [topic, bytes] of [
      [this.#topics.nbirth, nbirth],
      [this.#topics.dbirth, dbirth],
    ] as const) {
      const what = topic === this.#topics.nbirth ? "NBIRTH" : "DBIRTH";
      const size = bytes === undefined ? undefined : publishPacketSize(topic, bytes.length);
      if (size === undefined || (limit !== undefined && size > limit)) {
        this.#problems.set(
          "birth-size",
          size === undefined
            ? `the ${what} could not be encoded: not sent, so nothing is published`
            : `the ${what} (${size} bytes as an MQTT packet) is over the broker's Maximum Packet Size (${limit} bytes, ${session.packetLimitSource})${what === "DBIRTH" ? " even with its largest values sent as null" : ""}: not sent, so nothing is published; raise the broker's limit (mosquitto max_packet_size) or publish fewer or shorter tag properties. A host's maxPayloadBytes must exceed the largest birth too.`,
        );
        this.#birthNotSent(session, what);
        return;
      }
    }
    this.#problems.delete("birth-size");
    this.#seq = 1;
    // A new epoch: what was sent and not acknowledged is sent again after these births (ADR 0037).
    this.#epoch++;
    this.#forgetEarlierAcks();
    this.#unconfirmed.released += this.#unconfirmed.pendingSamples;
    this.#unconfirmed.pending = [];
    this.#unconfirmed.pendingSamples = 0;
    // NBIRTH, DBIRTH, NDATA, DDATA: QoS 0, not retained ([tck-id-topics-nbirth-mqtt] and the like).
    this.#publish(session, "NBIRTH", this.#topics.nbirth, nbirth!);
    this.#publish(session, "DBIRTH", this.#topics.dbirth, dbirth!);
    session.born = true;
    this.#counts.births++;
    this.#counts.metrics += metrics.length + nodeMetrics.length;
    void this.#bus.publish("birth-publish", { bdSeq: session.bdSeq, reason, metrics: metrics.length });
    // The backlog follows the births (the host has the aliases and current values first).
    void this.#replay();
  }

  /**
   * A birth that could not be sent (too large for the broker, or not encodable): `seq` and the
   * epoch stay as they were, the session is not born (its data is journaled with
   * store-and-forward, else counted in `samplesNotPublished`, never sent as DDATA the host would
   * see after a seq gap), and the birth is tried again after `minRebirthIntervalMs` while the
   * session lasts (ADR 0043, amendment 19u).
   *
   * When the session was born (a rebirth), the host still has its births and would show their
   * values good while none are published: it is told (amendment fix19s). A DBIRTH not sent: a
   * DDEATH (next `seq`, small, always fits) so it marks the device's values stale. An NBIRTH not
   * sent: the session is dropped without DISCONNECT, so the broker publishes the Will (NDEATH)
   * and the host marks the node stale; the next session starts unborn and retries.
   */
  #birthNotSent(session: Session, what: "NBIRTH" | "DBIRTH"): void {
    const wasBorn = session.born;
    session.born = false;
    if (wasBorn && what === "NBIRTH") {
      this.#dropSession(session, "an NBIRTH could not be sent: session dropped so the broker publishes NDEATH");
      return;
    }
    if (wasBorn && session.client.connected) {
      const ddeath = encodePayload({ timestamp: this.#clock.now(), seq: this.#nextSeq(), metrics: [] });
      this.#publish(session, "DDEATH", this.#topics.ddeath, ddeath);
    }
    if (this.#rebirthTimer !== undefined) return;
    this.#rebirthTimer = this.#clock.setTimeout(() => {
      this.#rebirthTimer = undefined;
      if (this.#stopping || this.#session !== session || session.closing || session.born) return;
      if (this.#topics.state !== undefined && this.#host.state !== "online") return;
      this.#birth(session, "session");
    }, this.#options.minRebirthIntervalMs ?? DEFAULT_MIN_REBIRTH_INTERVAL_MS);
  }

  #onChange(change: CvtChange): void {
    if (!change.valueChanged && !change.qualityChanged) return;
    if (!this.#byName.has(change.sample.tag)) return;
    this.#pending.push(change.sample);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    const session = this.#session;
    const samples = this.#pending;
    const machineState = this.#pendingMachineState;
    this.#pending = [];
    this.#pendingMachineState = undefined;
    if (samples.length === 0 && machineState === undefined) return;
    if (session === undefined || !session.born || session.closing || !session.client.connected) {
      // Store-and-forward keeps them for a replay flagged is_historical after the next births
      // (ADR 0031); without it they are counted, and the next births carry the latest values.
      if (this.#forward !== undefined) this.#store(samples, machineState);
      else this.#counts.notPublished += samples.length;
      return;
    }
    const metrics = samples.map((sample) => this.#metricOf(this.#byName.get(sample.tag)!, sample, false));
    if (machineState !== undefined) {
      metrics.push({
        alias: this.#machineStateAlias,
        timestamp: this.#clock.now(),
        datatype: "String",
        value: machineState,
      });
    }
    const awaiting = this.#awaitAcks;
    const unsent = this.#publishData(session, metrics, this.#ackMode !== "off", (from, to) => {
      // Kept until the host acknowledges it (ADR 0037), as the record a replay would send.
      if (awaiting)
        this.#store(samples.slice(from, to), to > samples.length ? machineState : undefined, {
          epoch: this.#epoch,
          message: this.#dataCount,
        });
    });
    this.#counts.notPublished += unsent.filter((index) => index < samples.length).length;
  }

  /**
   * Publishes `metrics` as DDATA (with a message number when `numbered`, ADR 0037): in one
   * message where it fits the broker's Maximum Packet Size ({@link #encodeData}), else split in
   * halves, each a message of its own, down to single metrics, like any message too large for the
   * broker: only a metric that does not fit alone, even as null, is not sent. `sent(from, to)` is
   * called after each message with the range of `metrics` it carried. Returns the indexes of the
   * metrics not sent.
   */
  #publishData(
    session: Session,
    metrics: readonly SparkplugMetric[],
    numbered: boolean,
    sent: (from: number, to: number) => void,
    offset = 0,
  ): number[] {
    const now = this.#clock.now();
    // [tck-id-payloads-alias-data-cmd-requirement] alias only; [tck-id-payloads-metric-datatype-not-req] no datatype.
    const bytes = this.#encodeData(session, {
      timestamp: now,
      metrics: numbered ? [...metrics, this.#messageNumber(this.#dataCount + 1, now, false)] : [...metrics],
    });
    if (bytes !== undefined) {
      this.#publish(session, "DDATA", this.#topics.ddata, bytes);
      if (numbered) {
        this.#firstNumberedAt ??= now;
        if (this.#awaitAcks) this.#ackWaitSince ??= now;
        else this.#unconfirmedSent(this.#dataCount + 1, metrics);
      }
      this.#dataCount++;
      this.#counts.dataMessages++;
      this.#counts.metrics += metrics.length;
      sent(offset, offset + metrics.length);
      return [];
    }
    if (metrics.length <= 1) {
      // Not sent at all: named until it is sent again (#publishedWhole).
      for (const metric of metrics)
        this.#notSent.set(
          this.#metricName(metric),
          `a DDATA of this one metric does not fit the broker's Maximum Packet Size (${session.brokerMaxPacketSize} bytes, ${session.packetLimitSource}) even without its value: not sent`,
        );
      this.#sayOversized();
      return metrics.map((_, index) => offset + index);
    }
    const half = Math.ceil(metrics.length / 2);
    return [
      ...this.#publishData(session, metrics.slice(0, half), numbered, sent, offset),
      ...this.#publishData(session, metrics.slice(half), numbered, sent, offset + half),
    ];
  }

  // ---- store-and-forward (ADR 0031) ----------------------------------------------------------

  async #openBacklog(forward: ForwardSettings): Promise<void> {
    if (forward.path === undefined && forward.journal === undefined) {
      this.#backlog = new MemoryBacklog(forward.maxBytes);
      return;
    }
    const opened =
      forward.journal !== undefined
        ? { ...(await JournalBacklog.of(forward.journal, false, this.#ackMode !== "off")), recovery: undefined }
        : await JournalBacklog.open(forward.path!, forward.maxBytes, this.#ackMode !== "off");
    this.#backlog = opened.backlog;
    const journalPath = forward.path ?? forward.journal?.path;
    if (this.#ackMode === "auto" && journalPath !== undefined) {
      // A primary host that acknowledged in an earlier run acknowledges now: awaited from the
      // start, so recovered records and live data are kept until it stores them (adv19f HIGH-1).
      const file = hostAcksMarkerPath(journalPath);
      const named = await loadHostAcksMarker(file);
      const recalled = named === null || named === this.#options.primaryHostId;
      if (recalled) this.#hostAcks = true;
      this.#hostAcksMarker = { file, saved: recalled };
    }
    this.#recovered = {
      records: opened.backlog.records,
      samples: opened.backlog.samples,
      unreadableRecords: opened.unreadableRecords,
    };
    if (opened.recovery !== undefined && (opened.recovery.skippedBytes > 0 || opened.recovery.discardedBytes > 0)) {
      this.#problems.set(
        "journal-recovery",
        `store-and-forward journal: ${opened.recovery.skippedRecords} corrupt stretch(es) (${opened.recovery.skippedBytes} bytes) skipped and ${opened.recovery.discardedBytes} bytes of a torn tail cut off on open; their samples are lost`,
      );
    }
  }

  #onForward<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#forwardChain.then(work);
    this.#forwardChain = run.catch(() => undefined);
    return run;
  }

  #drop(
    samples: number,
    reason: SparkplugEdgeNodeEvents["samples-drop"]["reason"],
    message: string,
    published = false,
  ): void {
    if (published) this.#counts.forwardDroppedAfterPublish += samples;
    else this.#counts.forwardDropped += samples;
    void this.#bus.publish("samples-drop", { samples, reason, message, ...(published ? { published } : {}) });
  }

  /** Hands changes that cannot be published now to the backlog, as records of at most `batchSamples`. */
  #store(samples: readonly Sample[], machineState: string | undefined, sent?: SentMark): void {
    const forward = this.#forward!;
    const metrics: SparkplugMetric[] = [];
    for (const sample of samples) {
      const binding = this.#byName.get(sample.tag)!;
      // A new object of its own: completed in place (no spread) on the awaitHostAcks hot path.
      const metric: { -readonly [K in keyof SparkplugMetric]: SparkplugMetric[K] } = this.#metricOf(
        binding,
        sample,
        false,
      );
      metric.name = binding.tag.name;
      metric.isHistorical = true;
      metrics.push(metric);
    }
    if (machineState !== undefined) {
      metrics.push({
        name: MACHINE_STATE_METRIC,
        timestamp: this.#clock.now(),
        datatype: "String",
        value: machineState,
        isHistorical: true,
      });
    }
    if (metrics.length === 0) return;
    // In time order within a record (stable: one tag's samples keep the CVT's order).
    metrics.sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
    for (let start = 0; start < metrics.length; start += forward.batchSamples) {
      const chunk = metrics.slice(start, start + forward.batchSamples);
      // With names and datatypes: the replay maps names to aliases again, as a later process (whose catalog may differ) must.
      const bytes = this.#encode({ timestamp: chunk[0]!.timestamp ?? this.#clock.now(), metrics: chunk });
      if (bytes === undefined) {
        this.#drop(chunk.length, "unencodable", `store-and-forward could not encode ${chunk.length} samples`);
        continue;
      }
      if (sent === undefined) this.#storing += chunk.length;
      else this.#storingSent += chunk.length;
      const appended = this.#onForward(() => this.#append(bytes, chunk.length, chunk[0]!.timestamp, sent));
      this.#forwardTask(
        appended
          .then((append) => append.done)
          .finally(() => {
            if (sent === undefined) this.#storing -= chunk.length;
            else {
              this.#storingSent -= chunk.length;
              this.#forgetEarlierAcks();
            }
            const session = this.#session;
            if (session?.born === true) void this.#replay();
          }),
      );
    }
  }

  /** Keeps `work` (which never rejects) until it is done, so `stop()` waits for it. */
  #forwardTask(work: Promise<void>): void {
    const task = work.catch(() => undefined);
    this.#forwardWork.add(task);
    void task.then(() => this.#forwardWork.delete(task));
  }

  /**
   * Hands a record to the backlog (on the forward chain, after the limits are applied) and returns
   * at once: `done` resolves once it is fsynced (then counted, and released when an ack already
   * covers it) or dropped and counted. The chain does not wait for the fsync, so the appends
   * queued behind one fsync share the next (group commit, in the journal).
   */
  async #append(
    bytes: Uint8Array,
    samples: number,
    oldest: number | undefined,
    sent?: SentMark,
  ): Promise<{ readonly done: Promise<void> }> {
    const forward = this.#forward!;
    const backlog = this.#backlog;
    // Stopped before start finished: nothing to keep them in.
    if (backlog === undefined) return { done: Promise.resolve() };
    const recordBytes = bytes.length + 12;
    const full = (): boolean =>
      backlog.samples + this.#appending.samples + samples > forward.maxSamples ||
      backlog.bytes + this.#appending.bytes + recordBytes > forward.maxBytes;
    if (full() && forward.overflow === "drop-oldest") {
      let dropped = 0;
      let droppedAfterPublish = 0;
      while (full() && backlog.records > 0) {
        // Published and not known to be stored (unacknowledged, or the record a replay is
        // sending): the host may have it, so it is counted apart from what was never sent.
        const oldest = backlog.oldestRecord()!;
        const count = (await backlog.dropOldest()) ?? 0;
        const inFlight = this.#replayInFlight;
        // Acknowledged: the host stored it (and it was counted then), so nothing is lost.
        if (oldest.acked) continue;
        if (oldest.sent || (inFlight !== undefined && oldest.id >= inFlight.from && oldest.id <= inFlight.through))
          droppedAfterPublish += count;
        else dropped += count;
      }
      if (dropped > 0)
        this.#drop(dropped, "overflow", `store-and-forward backlog full: ${dropped} oldest samples dropped`);
      if (droppedAfterPublish > 0)
        this.#drop(
          droppedAfterPublish,
          "overflow",
          `store-and-forward backlog full: ${droppedAfterPublish} oldest samples dropped after they were published and before they were known to be stored (the host may have them)`,
          true,
        );
    }
    if (full()) {
      // Live DDATA already published (awaiting acks): not kept for a resend, but the host may have it.
      this.#drop(
        samples,
        "overflow",
        `store-and-forward backlog full: ${samples} new samples refused${sent === undefined ? "" : " (published, not kept for a resend: the host may have them)"}`,
        sent !== undefined,
      );
      return { done: Promise.resolve() };
    }
    this.#appending.samples += samples;
    this.#appending.bytes += recordBytes;
    const settled = (): void => {
      this.#appending.samples -= samples;
      this.#appending.bytes -= recordBytes;
    };
    // The backlog takes records in the order handed to it and resolves them in that order.
    const appended =
      sent === undefined ? backlog.append(bytes, samples, oldest) : backlog.appendSent(bytes, samples, oldest, sent);
    const done = appended.then(
      () => {
        settled();
        this.#counts.stored += samples;
        this.#problems.delete("journal");
        // An ack may have come before the journal had the record (even before a new birth):
        // released now that it has it.
        const through = sent === undefined ? undefined : this.#ackedThrough.get(sent.epoch);
        if (sent !== undefined && through !== undefined && sent.message <= through)
          return this.#releaseAcknowledged(backlog, { epoch: sent.epoch, message: through });
        return undefined;
      },
      (error: unknown) => {
        settled();
        const reason = KilnError.is(error, "KILN_BUFFER_FULL") ? "overflow" : "journal-failed";
        this.#problems.set("journal", `store-and-forward: ${(error as Error).message}`);
        this.#drop(
          samples,
          reason,
          `store-and-forward could not keep ${samples} samples: ${(error as Error).message}`,
          sent !== undefined,
        );
      },
    );
    return { done };
  }

  /**
   * Sends the backlog, oldest record first, while births are out: one historical DDATA per
   * record, a window of up to {@link REPLAY_WINDOW_RECORDS} records at a time, yielding to live
   * data after each; then a barrier (an UNSUBSCRIBE the broker answers only after it has taken
   * every packet before it), then the window's records are released with one durable mark. One
   * round trip and one fsync per window, not per record (adversarial review 19u: one per record
   * replayed about 32 records/s).
   */
  async #replay(): Promise<void> {
    const backlog = this.#backlog;
    if (this.#replaying || backlog === undefined) return;
    this.#replaying = true;
    try {
      if (this.#awaitAcks) {
        await this.#replayUnsent(backlog);
        return;
      }
      for (;;) {
        // "auto" and the host's first ack came: what is left is kept until acknowledged.
        if (this.#awaitAcks) {
          await this.#replayUnsent(backlog);
          return;
        }
        const session = this.#session;
        const live = (): boolean =>
          !this.#stopping &&
          this.#session === session &&
          session !== undefined &&
          session.born &&
          !session.closing &&
          session.client.connected;
        if (!live()) return;
        /** Metrics published per record of this window, by record id. */
        const window = new Map<number, number>();
        let last: number | undefined;
        let published = false;
        // Records published live after the first ack carry a sent mark: not taken here.
        while (window.size < REPLAY_WINDOW_RECORDS && !this.#awaitAcks) {
          const after = last;
          const record = await this.#onForward(() => backlog.peekAfter(after));
          if (record === undefined || !live()) break;
          const metrics = this.#historicalMetrics(record.bytes);
          let sent = 0;
          if (metrics.length > 0) {
            const unsent = this.#publishData(session!, metrics, this.#ackMode !== "off", (from, to) => {
              sent += to - from;
              published = true;
            });
            if (unsent.length > 0)
              this.#drop(
                unsent.length,
                "unencodable",
                `store-and-forward could not send ${unsent.length} of a record's ${metrics.length} samples: too large for the broker even alone`,
              );
          }
          window.set(record.id, sent);
          last = record.id;
          this.#replayInFlight = { from: window.keys().next().value!, through: record.id };
          // Let live changes (a microtask flush) and commands through before the next record.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        if (last === undefined) return;
        if (!live()) return; // kept: sent again after the next births
        if (published && !(await this.#barrier(session!))) return;
        const through = last;
        const released = await this.#onForward(() => backlog.releaseThrough(through));
        this.#replayInFlight = undefined;
        for (const id of released) this.#counts.replayed += window.get(id) ?? 0;
      }
    } catch (error) {
      this.#problems.set("replay", `store-and-forward replay stopped: ${(error as Error).message}`);
    } finally {
      this.#replayInFlight = undefined;
      this.#replaying = false;
    }
  }

  /**
   * The replay while awaiting acks (ADR 0037): every record not sent in this epoch, oldest first,
   * as historical DDATA numbered like live ones; kept until an ack covers it. The barrier after
   * each paces the replay (one record per round trip); nothing is released by it.
   */
  async #replayUnsent(backlog: ForwardBacklog): Promise<void> {
    for (;;) {
      const session = this.#session;
      if (this.#stopping || session === undefined || !session.born || session.closing || !session.client.connected)
        return;
      const epoch = this.#epoch;
      const record = backlog.nextUnsent(epoch);
      if (record === undefined) return;
      const metrics = this.#historicalMetrics(record.bytes);
      let published = false;
      if (metrics.length > 0) {
        const unsent = this.#publishData(session, metrics, true, (from, to) => {
          this.#counts.replayed += to - from;
          published = true;
        });
        if (unsent.length > 0)
          this.#drop(
            unsent.length,
            "unencodable",
            `store-and-forward could not send ${unsent.length} of a record's ${metrics.length} samples: too large for the broker even alone`,
          );
      }
      // A record with nothing to send goes with the next ack that covers what was sent before it;
      // one sent in several messages with the ack that covers the last of them.
      backlog.markSent(record.id, { epoch, message: this.#dataCount });
      if (published && !(await this.#barrier(session))) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Releases what `acked` covers, counting it. Off the forward chain: the backlog takes every
   * release it covers at once (in memory, in order), so no other operation comes between them,
   * and counts only records whose append is fsynced.
   */
  async #releaseAcknowledged(backlog: ForwardBacklog, acked: SentMark): Promise<void> {
    try {
      const released = await backlog.releaseAcknowledged(acked.epoch, acked.message);
      this.#ackCounts.samples += released.samples;
    } catch (error) {
      this.#problems.set("journal", `store-and-forward: ${(error as Error).message}`);
    }
  }

  /** Drops the acks of earlier epochs once no live DDATA of theirs awaits its append. */
  #forgetEarlierAcks(): void {
    if (this.#storingSent > 0) return;
    for (const epoch of this.#ackedThrough.keys()) if (epoch !== this.#epoch) this.#ackedThrough.delete(epoch);
  }

  /**
   * An NCMD `Kiln/Stored Through` (ADR 0037): checked, then the records it covers are released.
   * Malformed: refused and counted; another host's or another session's: ignored and counted.
   */
  #onStoredThrough(session: Session, topic: string, metric: SparkplugMetric): void {
    const refuse = (why: string): void => {
      this.#ackCounts.refused++;
      this.#reject(topic, `${STORED_THROUGH_METRIC}: ${why}`);
    };
    const value = metric.value;
    const bdSeq = metric.properties?.["bdSeq"]?.value;
    const hostId = metric.properties?.["hostId"]?.value;
    if (typeof value !== "number" && typeof value !== "bigint")
      return refuse("its value must be a UInt64 message number");
    if (typeof bdSeq !== "number" && typeof bdSeq !== "bigint") return refuse("it needs a bdSeq property (UInt64)");
    if (typeof hostId !== "string") return refuse("it needs a hostId property (String)");
    const through = Number(value);
    if (this.#ackMode === "off" || hostId !== this.#options.primaryHostId || Number(bdSeq) !== session.bdSeq) {
      this.#ackCounts.ignored++;
      return;
    }
    if (!Number.isSafeInteger(through) || through < 0 || through > this.#dataCount)
      return refuse(`message ${String(value)} was never published in this session (${this.#dataCount} so far)`);
    const backlog = this.#backlog;
    this.#ackCounts.accepted++;
    const confirmed = this.#unconfirmed.pending.filter((each) => each.message <= through);
    this.#unconfirmed.pending = this.#unconfirmed.pending.filter((each) => each.message > through);
    for (const each of confirmed) this.#unconfirmed.pendingSamples -= each.samples;
    this.#lastAckAt = this.#clock.now();
    // "auto": the primary host acknowledges; from now on what is published is kept until it does.
    this.#hostAcks = true;
    this.#rememberHostAcks();
    this.#ackWaitSince = through >= this.#dataCount ? undefined : this.#lastAckAt;
    if ((this.#ackedThrough.get(this.#epoch) ?? -1) >= through) return;
    this.#ackedThrough.set(this.#epoch, through);
    if (backlog !== undefined)
      this.#forwardTask(this.#releaseAcknowledged(backlog, { epoch: this.#epoch, message: through }));
  }

  /** Counts a DDATA released at once in `"auto"` before the first ack (fix19g): unconfirmed until an ack covers it. */
  #unconfirmedSent(message: number, metrics: readonly SparkplugMetric[]): void {
    let samples = 0;
    for (const metric of metrics) if (metric.alias !== this.#machineStateAlias) samples++;
    if (samples === 0) return;
    const unconfirmed = this.#unconfirmed;
    unconfirmed.pending.push({ message, samples });
    unconfirmed.pendingSamples += samples;
    // Bounded (a host that never acknowledges): the oldest are counted as released for good.
    if (unconfirmed.pending.length > 4_096) {
      const oldest = unconfirmed.pending.shift()!;
      unconfirmed.pendingSamples -= oldest.samples;
      unconfirmed.released += oldest.samples;
    }
  }

  /**
   * Writes the marker beside the journal once the primary host acknowledged (fix19g), so a later
   * process awaits acks from its start; a failed write is a problem and is tried again at the next ack.
   */
  #rememberHostAcks(): void {
    const marker = this.#hostAcksMarker;
    if (marker === undefined || marker.saved) return;
    marker.saved = true;
    this.#forwardTask(
      saveHostAcksMarker(marker.file, this.#options.primaryHostId!).then(
        () => {
          this.#problems.delete("host-acks-marker");
        },
        (error: unknown) => {
          marker.saved = false;
          this.#problems.set(
            "host-acks-marker",
            `could not record that primary host ${this.#options.primaryHostId!} acknowledges (${marker.file}: ${(error as Error).message}): a restart before it is recorded releases what it recovers and publishes without acks`,
          );
        },
      ),
    );
  }

  /** The DDATA metrics of a backlog record: by alias, flagged historical; what no longer maps is dropped. */
  #historicalMetrics(bytes: Uint8Array): SparkplugMetric[] {
    let payload: SparkplugPayload;
    try {
      payload = decodePayload(bytes);
    } catch (error) {
      this.#drop(0, "unreadable", `store-and-forward record is not a Sparkplug payload: ${(error as Error).message}`);
      return [];
    }
    const metrics: SparkplugMetric[] = [];
    let unknown = 0;
    for (const metric of payload.metrics) {
      const alias =
        metric.name === MACHINE_STATE_METRIC
          ? metric.datatype === "String"
            ? this.#machineStateAlias
            : undefined
          : this.#byName.get(metric.name ?? "")?.datatype === metric.datatype
            ? this.#byName.get(metric.name!)!.alias
            : undefined;
      if (alias === undefined) {
        unknown++;
        continue;
      }
      metrics.push({
        alias,
        ...(metric.timestamp === undefined ? {} : { timestamp: metric.timestamp }),
        datatype: metric.datatype!,
        isHistorical: true,
        value: metric.value ?? null,
        ...(metric.properties === undefined ? {} : { properties: metric.properties }),
      });
    }
    if (unknown > 0)
      this.#drop(
        unknown,
        "unknown-metric",
        `${unknown} stored samples name no metric of this device (or another type)`,
      );
    return metrics;
  }

  /** Resolves true once the broker answered an UNSUBSCRIBE sent after everything published so far. */
  async #barrier(session: Session): Promise<boolean> {
    const client = session.client;
    let onClose: (() => void) | undefined;
    const timer = new AbortController();
    try {
      return await Promise.race([
        // The DDATA topic: never subscribed by the node, so unsubscribing it changes nothing.
        client.unsubscribeAsync(this.#topics.ddata).then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => {
          onClose = () => resolve(false);
          client.once("close", onClose);
        }),
        this.#clock.sleep(BARRIER_TIMEOUT_MS, timer.signal).then(
          () => false,
          () => false,
        ),
      ]);
    } finally {
      timer.abort();
      if (onClose !== undefined) client.off("close", onClose);
    }
  }

  // ---- commands and STATE --------------------------------------------------------------------

  #onMessage(session: Session, topic: string, bytes: Uint8Array, retained: boolean): void {
    const command = topic === this.#topics.ncmd || topic === this.#topics.dcmd;
    if (this.#session !== session || session.closing) {
      // A command reaching a session that is saying goodbye (after the primary host's STATE
      // offline, or stop()) or that was already replaced is not handled, but never dropped
      // unseen: counted, reported and, for a DCMD, audited (IEC 62443-3-3 CR 2.8).
      if (command) this.#dropCommand(topic, "session-closing");
      return;
    }
    // Likewise on a session not born (yet): nothing reaches the PLC until the node is born again.
    if (command && !session.born) {
      this.#dropCommand(topic, "session-unborn");
      return;
    }
    // Before decoding: the size is known without reading it.
    const limit = this.#options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    if (bytes.length > limit) {
      if (command) this.#dropCommand(topic, "too-large", undefined, bytes.length);
      else this.#reject(topic, `payload of ${bytes.length} bytes is over maxPayloadBytes (${limit}): not read`);
      return;
    }
    if (command && retained) {
      this.#dropCommand(topic, "retained");
      return;
    }
    if (topic === this.#topics.state) {
      this.#onHostState(session, topic, bytes);
      return;
    }
    if (!command) return;
    if (topic === this.#topics.ncmd)
      this.#onNodeCommand(session, topic, bytes, (work) => this.#queueCommand(topic, work));
    else this.#queueCommand(topic, () => this.#onDeviceCommand(session, topic, bytes));
  }

  /**
   * Queues a command's work on the command chain: in order, one message after the other, so the
   * writes of one DCMD, and of successive commands, keep their order. Every queued command, NCMD
   * and DCMD, is bounded here: a flood is dropped (counted and audited) before any work is queued
   * for it (issue 19, adversarial HIGH 1).
   */
  #queueCommand(topic: string, work: () => Promise<void>): void {
    if (this.#commandsQueued >= (this.#options.maxPendingCommands ?? DEFAULT_MAX_PENDING_COMMANDS)) {
      this.#dropCommand(topic, "queue-full");
      return;
    }
    this.#commandsQueued++;
    this.#commandChain = this.#commandChain
      .then(work)
      .catch(() => undefined)
      .finally(() => {
        this.#commandsQueued--;
      });
  }

  #dropCommand(
    topic: string,
    reason: SparkplugEdgeNodeEvents["command-drop"]["reason"],
    metrics?: number,
    bytes?: number,
  ): void {
    this.#counts.dropped++;
    if (reason !== "unknown-node-metric") this.#dropAudit.record(topic === this.#topics.ncmd ? "NCMD" : "DCMD", reason);
    void this.#bus.publish("command-drop", {
      topic,
      reason,
      ...(metrics === undefined ? {} : { metrics }),
      ...(bytes === undefined ? {} : { bytes }),
    });
  }

  /**
   * One audit entry for `messages` whole `command` messages dropped for `reason` (summed per second by
   * {@link CommandDropAudit}): a refused `tag.write` of the configured principal, action
   * `sparkplug.dcmd-drop` (`sparkplug.ncmd-drop` for NCMD), the count and reason in the target, so they survive even when the
   * entry is a `KILN_FORBIDDEN` denial.
   */
  async #auditDrops(command: "NCMD" | "DCMD", reason: DroppedCommandReason, messages: number): Promise<void> {
    const why =
      reason === "queue-full"
        ? `more than ${String(this.#options.maxPendingCommands ?? DEFAULT_MAX_PENDING_COMMANDS)} waiting`
        : reason === "too-many-metrics"
          ? `more than ${String(this.#options.maxMetricsPerCommand ?? DEFAULT_MAX_METRICS_PER_COMMAND)} metrics`
          : reason === "too-large"
            ? `payload over ${String(this.#options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES)} bytes, not decoded`
            : reason === "retained"
              ? "published retained: Sparkplug commands are never retained, a retained one is replayed by the broker on every subscribe"
              : reason === "session-closing"
                ? "arrived while the node's MQTT session was ending (primary host offline, or stop()) or after it was replaced"
                : reason === "session-unborn"
                  ? "arrived while the node's MQTT session was not born (its NBIRTH not published yet, or no longer current)"
                  : "payload not decodable";
    await this.#system
      .refuseCommand(this.#principal, {
        permission: "tag.write",
        action: command === "NCMD" ? "sparkplug.ncmd-drop" : "sparkplug.dcmd-drop",
        target: `(${String(messages)} whole ${command} ${messages === 1 ? "message" : "messages"}: ${reason})`,
        reason: new KilnError(
          reason === "queue-full"
            ? "KILN_BUFFER_FULL"
            : reason === "session-closing" || reason === "session-unborn"
              ? "KILN_NOT_CONNECTED"
              : "KILN_VALIDATION",
          `${String(messages)} ${command} ${messages === 1 ? "message" : "messages"} on ${command === "NCMD" ? this.#topics.ncmd : this.#topics.dcmd} dropped unhandled (${why}); none of their writes done`,
          { details: { reason, messages } },
        ),
      })
      .catch(() => undefined); // it always rejects: with the reason, or why it could not be audited
  }

  /** True (and the message dropped) when `payload` carries more metrics than one command may. */
  #tooManyMetrics(topic: string, payload: SparkplugPayload): boolean {
    const max = this.#options.maxMetricsPerCommand ?? DEFAULT_MAX_METRICS_PER_COMMAND;
    if (payload.metrics.length <= max) return false;
    this.#dropCommand(topic, "too-many-metrics", payload.metrics.length);
    return true;
  }

  #reject(topic: string, message: string): void {
    this.#counts.malformed++;
    void this.#bus.publish("message-reject", { topic, message });
  }

  #onHostState(session: Session, topic: string, bytes: Uint8Array): void {
    let state: { online: boolean; timestamp: number };
    try {
      state = decodeHostState(bytes);
    } catch (error) {
      this.#reject(topic, (error as Error).message);
      return;
    }
    this.#takeHostState(session, state);
  }

  /** Follows, ignores or holds back (too far ahead of this node's clock) one primary host STATE. */
  #takeHostState(session: Session, state: { online: boolean; timestamp: number }): void {
    const previous = this.#host;
    const now = this.#clock.now();
    const iso = (at: number): string =>
      Number.isFinite(at) && Math.abs(at) <= 8.64e15 ? new Date(at).toISOString() : String(at);
    const what = `STATE ${state.online ? "online" : "offline"} at ${iso(state.timestamp)} (${state.timestamp})`;
    const skew = this.#options.maxHostClockSkewMs ?? DEFAULT_MAX_HOST_CLOCK_SKEW_MS;
    // Far ahead of this node's clock: taken as the newest, it would pin the node, which would
    // then ignore every later STATE of that host until it restarts.
    if (state.timestamp > now + skew) {
      const message = `${what} ignored: more than ${skew} ms (maxHostClockSkewMs) ahead of this node's clock (${iso(now)}); check the host's and this node's clocks (held back and followed once this node's clock is within the bound)`;
      this.#ignoreHostState(state, "future", message);
      this.#deferHostState(session, state, message);
      return;
    }
    // [tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp]: only a STATE at least as
    // new as the last one counts; an old session's death must not take the node down.
    const newest =
      previous.timestamp !== undefined && state.timestamp < previous.timestamp
        ? previous.timestamp
        : !state.online && previous.onlineTimestamp !== undefined && state.timestamp < previous.onlineTimestamp
          ? previous.onlineTimestamp
          : undefined;
    if (newest !== undefined) {
      this.#ignoreHostState(
        state,
        "older",
        `${what} ignored: older than the STATE at ${iso(newest)} (${newest}) seen at ${iso(previous.seenAt ?? now)}; a host whose clock is behind the previous one's is not followed until its STATE timestamps pass that one (or this node restarts)`,
      );
      return;
    }
    this.#problems.delete("host-state");
    if (this.#deferredState !== undefined && this.#deferredState.state.timestamp <= state.timestamp) {
      this.#dropDeferredState();
    }
    this.#host = {
      state: state.online ? "online" : "offline",
      timestamp: state.timestamp,
      seenAt: now,
      ...(state.online
        ? { onlineTimestamp: state.timestamp }
        : previous.onlineTimestamp === undefined
          ? {}
          : { onlineTimestamp: previous.onlineTimestamp }),
    };
    if (previous.state !== this.#host.state || previous.timestamp !== state.timestamp) {
      void this.#bus.publish("host-state-change", {
        hostId: this.#options.primaryHostId!,
        online: state.online,
        timestamp: state.timestamp,
      });
    }
    if (state.online) {
      if (!session.born) this.#birth(session, "session");
      return;
    }
    if (session.born) {
      // [tck-id-message-flow-edge-node-birth-publish-phid-offline]: NDEATH, disconnect, start over.
      session.closing = true;
      this.#session = undefined;
      void this.#goodbye(session, false).then(() => {
        if (!this.#stopping) void this.#reconnect(`primary host ${this.#options.primaryHostId} went offline`, true);
      });
    }
  }

  /**
   * Holds back a STATE too far ahead of this node's clock (the newest such one of the session) and
   * checks it again every {@link DEFERRED_STATE_RECHECK_MS}: once the clock is within the bound it
   * is taken as if it had just arrived; it is dropped when its session ends.
   */
  #deferHostState(session: Session, state: { online: boolean; timestamp: number }, message: string): void {
    if (this.#stopping) return;
    const held = this.#deferredState;
    if (held !== undefined && held.session === session && held.state.timestamp > state.timestamp) return;
    this.#deferredState = { session, state, message };
    if (this.#deferredTimer !== undefined) return;
    const recheck = (): void => {
      this.#deferredTimer = undefined;
      const deferred = this.#deferredState;
      if (deferred === undefined || this.#stopping) return;
      if (this.#session !== deferred.session || deferred.session.closing) {
        this.#deferredState = undefined;
        return;
      }
      const skew = this.#options.maxHostClockSkewMs ?? DEFAULT_MAX_HOST_CLOCK_SKEW_MS;
      if (deferred.state.timestamp > this.#clock.now() + skew) {
        this.#deferredTimer = this.#clock.setTimeout(recheck, DEFERRED_STATE_RECHECK_MS);
        return;
      }
      this.#deferredState = undefined;
      this.#takeHostState(deferred.session, deferred.state);
    };
    this.#deferredTimer = this.#clock.setTimeout(recheck, DEFERRED_STATE_RECHECK_MS);
  }

  #dropDeferredState(): void {
    if (this.#deferredTimer !== undefined) this.#clock.clearTimeout(this.#deferredTimer);
    this.#deferredTimer = undefined;
    this.#deferredState = undefined;
  }

  /** Reports an ignored STATE; an ignored online STATE is a problem while the host is not online. */
  #ignoreHostState(state: { online: boolean; timestamp: number }, reason: "older" | "future", message: string): void {
    void this.#bus.publish("host-state-ignore", {
      hostId: this.#options.primaryHostId!,
      online: state.online,
      timestamp: state.timestamp,
      reason,
      message,
    });
    if (reason === "older" && state.online && this.#host.state !== "online") this.#problems.set("host-state", message);
  }

  /**
   * An NCMD, read on arrival: its acks (`Kiln/Stored Through`) are applied at once, in message
   * order, so an ack the host sent before its STATE offline is applied before that STATE ends the
   * session (queued behind DCMDs, it came after it and was dropped: the host's final ack was lost
   * and what it had stored was sent again to the next host). A rebirth request and metrics the
   * node does not act on go on the command chain (`queue`), in order with DCMDs.
   */
  #onNodeCommand(session: Session, topic: string, bytes: Uint8Array, queue: (work: () => Promise<void>) => void): void {
    let payload: SparkplugPayload;
    try {
      payload = decodePayload(bytes, {
        datatypeOf: ({ name }) =>
          name === REBIRTH_METRIC ? "Boolean" : name === STORED_THROUGH_METRIC ? "UInt64" : undefined,
      });
    } catch (error) {
      this.#reject(topic, (error as Error).message);
      this.#dropAudit.record("NCMD", "undecodable");
      return;
    }
    if (this.#tooManyMetrics(topic, payload)) return;
    for (const metric of payload.metrics)
      if (metric.name === STORED_THROUGH_METRIC) this.#onStoredThrough(session, topic, metric);
    const ignored = payload.metrics.filter(
      (metric) => metric.name !== REBIRTH_METRIC && metric.name !== STORED_THROUGH_METRIC,
    );
    const rebirth = payload.metrics.some((metric) => metric.name === REBIRTH_METRIC && metric.value === true);
    if (!rebirth && ignored.length === 0) return;
    queue(async () => {
      // Queued behind earlier commands: the session may have ended or lost its birth meanwhile.
      const blocked = this.#commandBlocked(session);
      if (blocked !== undefined) {
        this.#dropCommand(topic, blocked);
        return;
      }
      if (rebirth) this.#requestRebirth(session);
      if (ignored.length > 0) await this.#dropNodeMetrics(topic, ignored);
    });
  }

  /**
   * NCMD metrics the node does not act on (a device tag's name such as `heater.setpoint`, which
   * only a DCMD writes; a node control it does not support): the message counts as dropped
   * (`command-drop` `unknown-node-metric`, `commands.dropped`), and the metrics are audited as one
   * refused `tag.write` (`sparkplug.ncmd-drop`, `KILN_TAG_UNKNOWN`) per message, naming how many
   * and the first few ({@link summarizeRefusals}), so a write that was never done leaves its entry
   * (ADR 0043, amendment fix19s) and a flood of them cannot flood the audit trail (fix19b).
   */
  async #dropNodeMetrics(topic: string, metrics: readonly SparkplugMetric[]): Promise<void> {
    this.#dropCommand(topic, "unknown-node-metric", metrics.length);
    const refusals = metrics.map((metric): EarlyRefusal => {
      const target = metric.name ?? (metric.alias === undefined ? "(no name)" : `alias:${String(metric.alias)}`);
      const device = metric.name !== undefined && this.#byName.has(metric.name);
      return {
        target,
        code: "KILN_TAG_UNKNOWN",
        message: `NCMD metric ${target} on ${topic} is not a node metric the node acts on${device ? ` (${target} is a device tag: write it by DCMD on ${this.#topics.dcmd})` : ""}: not written`,
      };
    });
    await this.#auditRefusals("NCMD", topic, refusals, "sparkplug.ncmd-drop");
  }

  /**
   * Audits refusals of one command message made before Kiln's command path, summed per code
   * ({@link summarizeRefusals}), as refused `tag.write`s of the configured principal through
   * `system.refuseCommand`; empties `refusals`.
   */
  async #auditRefusals(
    command: "NCMD" | "DCMD",
    topic: string,
    refusals: EarlyRefusal[],
    action?: string,
  ): Promise<void> {
    const entries = summarizeRefusals(command, topic, refusals.splice(0));
    for (const entry of entries) {
      await this.#system
        .refuseCommand(this.#principal, {
          permission: "tag.write",
          ...(action === undefined ? {} : { action }),
          target: entry.target,
          reason: new KilnError(entry.code, entry.message),
        })
        .catch(() => undefined); // it always rejects: with the reason, or why it could not be audited
    }
  }

  /**
   * A rebirth at an NCMD request: now, or — within `minRebirthIntervalMs` of the last birth —
   * once the interval has passed, one for every request that came meanwhile (coalesced, counted).
   */
  /** Elapsed-time reading: the clock's monotonic time where it has one, else its wall time. */
  #elapsed(): number {
    return this.#clock.monotonicNow?.() ?? this.#clock.now();
  }

  #requestRebirth(session: Session): void {
    if (this.#rebirthTimer !== undefined) {
      this.#counts.rebirthsCoalesced++;
      return;
    }
    const interval = this.#options.minRebirthIntervalMs ?? DEFAULT_MIN_REBIRTH_INTERVAL_MS;
    const wait = this.#lastBirthAt === undefined ? 0 : this.#lastBirthAt + interval - this.#elapsed();
    if (wait <= 0) {
      this.#counts.rebirths++;
      this.#birth(session, "rebirth");
      return;
    }
    this.#counts.rebirthsCoalesced++;
    this.#rebirthTimer = this.#clock.setTimeout(() => {
      this.#rebirthTimer = undefined;
      // A session that ended took its request with it: the next session is born anyway.
      if (this.#stopping || this.#session !== session || session.closing || !session.born) return;
      this.#counts.rebirths++;
      this.#birth(session, "rebirth");
    }, wait);
  }

  /**
   * Why a command may not be handled on `session` now: `session-closing` (saying goodbye, or
   * replaced), `session-unborn` (its NBIRTH not published), else undefined. Checked when a command
   * arrives and again right before each DCMD write, which may run long after (queued behind a slow
   * PLC write): nothing reaches the PLC from a session that is not born, current and open.
   */
  #commandBlocked(session: Session): "session-closing" | "session-unborn" | undefined {
    if (this.#session !== session || session.closing) return "session-closing";
    return session.born ? undefined : "session-unborn";
  }

  async #onDeviceCommand(session: Session, topic: string, bytes: Uint8Array): Promise<void> {
    // Queued behind earlier DCMDs: the session may have ended or lost its birth meanwhile.
    const blocked = this.#commandBlocked(session);
    if (blocked !== undefined) {
      this.#dropCommand(topic, blocked);
      return;
    }
    let payload: SparkplugPayload;
    try {
      payload = decodePayload(bytes, {
        datatypeOf: ({ name, alias }) =>
          (alias !== undefined
            ? this.#byAlias.get(Number(alias))
            : name !== undefined
              ? this.#byName.get(name)
              : undefined
          )?.datatype,
      });
    } catch (error) {
      this.#reject(topic, (error as Error).message);
      this.#dropAudit.record("DCMD", "undecodable");
      return;
    }
    if (this.#tooManyMetrics(topic, payload)) return;
    // Refusals before Kiln are audited summed (one entry per code) when the message is done or
    // right before the next checked write, so the trail keeps their order among Kiln's own entries.
    const early: EarlyRefusal[] = [];
    try {
      await this.#writeDeviceMetrics(session, topic, payload, early);
    } finally {
      await this.#auditRefusals("DCMD", topic, early);
    }
  }

  async #writeDeviceMetrics(
    session: Session,
    topic: string,
    payload: SparkplugPayload,
    early: EarlyRefusal[],
  ): Promise<void> {
    for (const metric of payload.metrics) {
      // An alias decides (Sparkplug 3.0.0, 6.4.7: aliases in DATA and CMD): one this device never
      // announced is refused even with a name beside it, never guessed from the name; a name that
      // contradicts its alias is refused too.
      const binding =
        metric.alias !== undefined
          ? this.#byAlias.get(Number(metric.alias))
          : metric.name !== undefined
            ? this.#byName.get(metric.name)
            : undefined;
      if (metric.alias !== undefined && binding === undefined) {
        this.#refuseBeforeKiln(early, {
          alias: metric.alias,
          ...(metric.name === undefined ? {} : { tag: metric.name }),
          code: "KILN_TAG_UNKNOWN",
          message: `DCMD alias ${String(metric.alias)} names no metric of this device`,
        });
        continue;
      }
      if (metric.alias !== undefined && metric.name !== undefined && metric.name !== binding!.tag.name) {
        this.#refuseBeforeKiln(early, {
          alias: metric.alias,
          tag: metric.name,
          code: "KILN_VALIDATION",
          message: `DCMD alias ${String(metric.alias)} is ${binding!.tag.name}, not the name it carries`,
        });
        continue;
      }
      // A datatype on the wire that is not the one the DBIRTH gave this metric: the value was
      // read as that other type (a DateTime 3 for a Float metric), so it is not the value meant
      // for this metric — refused, never converted. Without a datatype, the birth's applies.
      if (binding !== undefined && metric.datatype !== undefined && metric.datatype !== binding.datatype) {
        this.#refuseBeforeKiln(early, {
          ...(metric.alias === undefined ? {} : { alias: metric.alias }),
          tag: binding.tag.name,
          code: "KILN_VALIDATION",
          message: `DCMD for ${binding.tag.name}${metric.alias === undefined ? "" : ` (alias ${String(metric.alias)})`} carries datatype ${metric.datatype}, but its DBIRTH datatype is ${binding.datatype}`,
        });
        continue;
      }
      // A name this device never announced still goes to Kiln, which refuses and audits it.
      const tag = binding?.tag.name ?? metric.name;
      if (tag === undefined) {
        this.#refuseBeforeKiln(early, {
          code: "KILN_VALIDATION",
          message: "DCMD metric carries neither an alias nor a name",
        });
        continue;
      }
      const value = metric.value;
      if (
        value === undefined ||
        value === null ||
        !(
          typeof value === "number" ||
          typeof value === "bigint" ||
          typeof value === "boolean" ||
          typeof value === "string"
        )
      ) {
        this.#refuseBeforeKiln(early, {
          tag,
          code: "KILN_VALIDATION",
          message: `DCMD for ${tag} carries no value a tag can take`,
        });
        continue;
      }
      // A value its metric's Sparkplug type cannot hold (a Double 3.5e39 for a Float metric) is
      // refused here, before Kiln; Kiln's own check of the tag's type would refuse it as well.
      const problem = binding === undefined ? undefined : scalarValueProblem(binding.datatype, value);
      if (problem !== undefined) {
        this.#refuseBeforeKiln(early, { tag, code: "KILN_VALIDATION", message: `DCMD for ${tag}: ${problem}` });
        continue;
      }
      // Right before the checked write (an earlier one may have taken seconds): refused, never
      // written, once the session is no longer born, current and open.
      const late = this.#commandBlocked(session);
      if (late !== undefined) {
        this.#refuseBeforeKiln(early, {
          tag,
          code: "KILN_NOT_CONNECTED",
          message: `DCMD for ${tag} not written: ${late === "session-closing" ? "the node's session ended (primary host offline, stop() or a reconnect)" : "the node's session is not born"} before its turn came`,
        });
        continue;
      }
      await this.#auditRefusals("DCMD", topic, early);
      try {
        await this.#system.writeTag(this.#principal, tag, value, { comment: `Sparkplug DCMD on ${topic}` });
        this.#counts.written++;
        void this.#bus.publish("command-write", { tag, value });
      } catch (error) {
        this.#refuse({
          tag,
          code: KilnError.is(error) ? error.code : "KILN_DEVICE_ERROR",
          message: (error as Error).message,
        });
      }
    }
  }

  /**
   * A DCMD metric refused here, before it could become a Kiln command (an alias this device never
   * announced, a name contradicting its alias, no value, a value its Sparkplug type cannot hold, a session no longer born when its turn came):
   * counted and announced per metric, and collected in `early` to be audited as a refused
   * `tag.write` of the configured principal through `system.refuseCommand` — one entry per code
   * and message ({@link summarizeRefusals}) — so every refused command leaves its entry
   * (IEC 62443-3-3 CR 2.8) without one message writing hundreds. The target is the tag, else
   * `alias:<n>`, else `(no name)`.
   */
  #refuseBeforeKiln(
    early: EarlyRefusal[],
    event: SparkplugEdgeNodeEvents["command-refuse"] & {
      readonly code: "KILN_TAG_UNKNOWN" | "KILN_VALIDATION" | "KILN_NOT_CONNECTED";
    },
  ): void {
    this.#refuse(event);
    const target = event.tag ?? (event.alias === undefined ? "(no name)" : `alias:${String(event.alias)}`);
    early.push({ target, code: event.code, message: event.message });
  }

  #refuse(event: SparkplugEdgeNodeEvents["command-refuse"]): void {
    this.#counts.refused++;
    // The sender's name is echoed bounded and escaped, as Kiln's audit entry records a target.
    void this.#bus.publish(
      "command-refuse",
      event.tag === undefined ? event : { ...event, tag: auditedTarget(event.tag) },
    );
  }
}
