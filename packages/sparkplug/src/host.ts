import type { IClientOptions, MqttClient } from "mqtt";
import { EventBus } from "@kiln/core/advanced";
import {
  KilnError,
  KilnValidationError,
  defineTags,
  SystemClock,
  type CircuitBreakerSnapshot,
  type Clock,
  type DriverStatus,
  type EventBusView,
  type Quality,
  type Sample,
  type Store,
  type Tag,
  type TagDefinitionInput,
  type TimerHandle,
} from "@kiln/core";
import {
  ConnectionLifecycle,
  QualityCodes,
  SAMPLE_TIME_MAX,
  SAMPLE_TIME_MIN,
  checkBackoff,
  quality,
  raceAbort,
  type DriverStatusChange,
  type ReconnectBackoff,
  type SampleConflict,
} from "@kiln/core/driver-kit";
import { AWAIT_ACKS_METRIC, MESSAGE_NUMBER_METRIC, STORED_THROUGH_METRIC } from "./edge-node";
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
import { tagDataTypeOfSparkplug, type SparkplugMetricDataType } from "./datatypes";
import { decodeHostState, encodeHostState } from "./host-state";
import { qualityOfMetric, tagValueOfMetric } from "./host-samples";
import { durationIssues, mqttTimingIssues } from "./duration-options";
import { FifoQueue } from "./fifo-queue";
import { HostInbox } from "./host-inbox";
import { HostSampleWriter, type SparkplugHostBatching } from "./host-sample-writer";
import { OldestFirstIndex } from "./oldest-first-index";
import { SessionTakeover } from "./session-takeover";
import { TAG_NAME_MAX, qualifiedTagName } from "./host-tag-names";
import { decodePayload, encodePayload, type SparkplugMetric, type SparkplugPayload } from "./payload";
import {
  checkSparkplugIds,
  parseSparkplugTopic,
  sparkplugTopic,
  SPARKPLUG_NAMESPACE,
  type SparkplugTopic,
} from "./topic";

/** The metric a host writes `true` to, by NCMD, to ask an edge node for its births again. */
const REBIRTH = "Node Control/Rebirth";
const BDSEQ = "bdSeq";

/**
 * Caps on what a {@link SparkplugHost} keeps in memory (ADR 0030, amendment of 2026-12-02). The
 * defaults fit a large fleet (thousands of edge nodes, about 1.5 KB of host memory per metric
 * held: 2,000,000 metrics is about 3 GB); lower them to what the plant has, with room to grow.
 */
export interface SparkplugHostLimits {
  /**
   * Edge nodes the host follows (every one it has heard from, online or not). When a new one
   * would go past this, the one not online seen least recently (one never born first) is
   * forgotten, with its devices and metrics, to make room; when every one is online, the message
   * is refused before it is read and no state is kept for it. @default 10000
   */
  readonly maxEdgeNodes?: number;
  /**
   * Devices of one edge node, online or dead: a DBIRTH of a device more forgets the dead device
   * seen least recently; with every one online it is refused (as a birth the host cannot take).
   * @default 1000
   */
  readonly maxDevicesPerEdgeNode?: number;
  /** Metrics in one NBIRTH or DBIRTH: a birth with more is refused. @default 100000 */
  readonly maxMetricsPerBirth?: number;
  /**
   * Metrics of all current births of all edge nodes together (a device's birth ended by an NBIRTH
   * counts until the device is born again or forgotten): a birth that would take the host past
   * this first forgets what is dead (offline devices, edge nodes not online with everything they
   * hold), least recently seen first, then is refused. Per-metric state of a metric no birth
   * declares any more is released. A birth counts at least 1, metrics or not, and edge node and
   * device ids longer than 1,024 characters are refused as malformed, so births without metrics
   * or with huge ids are bounded too. @default 2000000
   */
  readonly maxMetrics?: number;
}

/** Which cap of {@link SparkplugHostLimits} refused something. */
export type SparkplugHostLimit = keyof SparkplugHostLimits;

const DEFAULT_LIMITS: Required<SparkplugHostLimits> = {
  maxEdgeNodes: 10_000,
  maxDevicesPerEdgeNode: 1_000,
  maxMetricsPerBirth: 100_000,
  maxMetrics: 2_000_000,
};

/** Options of {@link SparkplugHost}. */
export interface SparkplugHostOptions {
  /** The broker, e.g. `mqtt://broker.plant:1883` or `mqtts://...`. */
  readonly brokerUrl: string;
  /** This host application's id, unique in the infrastructure: its STATE topic is `spBv1.0/STATE/<hostId>`. */
  readonly hostId: string;
  /** The Sparkplug groups to follow, each once: the host subscribes `spBv1.0/<group>/#` for each. */
  readonly groups: readonly string[];
  /**
   * Where every metric is stored, as Kiln samples under qualified tag names (see
   * {@link qualifiedTagName}). The host calls `store.open([])` at start (idempotent), and
   * `store.open(tags)` with each birth's metric metadata (data type, unit, range, description).
   * The host does not close it.
   */
  readonly store: Store;
  /** Register tag metadata from births with `store.open(tags)`. @default true */
  readonly registerTags?: boolean;
  /** Batching, bound and retries of store writes. */
  readonly batching?: SparkplugHostBatching;
  /**
   * The shortest interval between two rebirth requests (NCMD `Node Control/Rebirth`) to one edge
   * node, in ms: more requests in between are counted as suppressed (`rebirthsSuppressed`, and one
   * `rebirth-request` event with `suppressed` per interval). From 0 to 3,600,000 (1 hour).
   * @default 5000
   */
  readonly rebirthIntervalMs?: number;
  /**
   * How long an edge node has to answer with an NBIRTH, in ms, once the host asked it for one
   * because the host may have missed its messages (`rebirth-request` reason
   * `messages-maybe-lost`): after the host held back reading from the broker (its store or queue
   * was behind), the broker may have dropped what it queued for the host meanwhile (a DDEATH,
   * data, a birth). Every edge node online then is asked (again every `rebirthIntervalMs` until it
   * answers), its live values are uncertain and it is named in `health().problems` as unverified;
   * its data is held (not stored, acknowledged or shown) until its NBIRTH, then stored good where
   * that birth decodes it the same (ADR 0043, amendment fix19z). No NBIRTH within this time of the
   * first request sent, and it is declared `offline` with its devices (stale marks stored, after
   * the data it held, stored uncertain). The time counts only while the host
   * reads from the broker: time it holds its connection again (its store behind), the answer
   * waiting at the broker, is not counted (ADR 0043, amendment fix19v). An edge node whose first
   * NBIRTH comes within this time after a hold is asked the same way. Deaths themselves are read
   * on a second MQTT session that is never held (ADR 0043, amendment fix19o).
   * From 1 to 3,600,000 (1 hour).
   * @throws KilnValidationError (KILN_VALIDATION) naming `rebirthTimeoutMs` otherwise.
   * @default 10000
   */
  readonly rebirthTimeoutMs?: number;
  /**
   * Rebirth requests (NCMD `Node Control/Rebirth`) out at once, to different edge nodes, at most
   * (ADR 0043, amendment fix19x). A request is out from when it is sent until the edge node's
   * answer (its NBIRTH and the DBIRTHs taken after it) is settled in the store, or for
   * `rebirthTimeoutMs` of the host reading from the broker without that. A request to another edge
   * node is also held while the births already asked for, and this one's (as large as its last),
   * would take the writer to where the host stops reading from the broker (half of
   * `batching.maxQueuedSamples`); one request is always let out when none is. A request held so
   * waits its turn, oldest first (edge nodes that answered their last request before those that
   * did not: amendment fix19y): counted in `rebirthsPaced`, reported once by `rebirth-request`
   * with `suppressed`, named in `health().problems` while it waits; the edge node's live values
   * stay stale or uncertain meanwhile (never good), and `rebirthTimeoutMs` starts only once it is
   * sent. Without this, a fleet-wide birth wave into a store slower than the wave held the host, each
   * hold's end asked every edge node for a rebirth, and the answers held it again, for ever.
   * A request that held its turn for `rebirthTimeoutMs` unanswered doubles that edge node's
   * `rebirthIntervalMs` (up to 64 times, and never beyond `rebirthTimeoutMs`), until its next
   * NBIRTH, and its next requests wait behind those of edge nodes that answer, so edge nodes that
   * never answer cannot keep the turns from those that do; edge nodes born before go ahead of
   * ids never born (anyone can invent those by publishing data on them: amendment fix19ab).
   * A whole number from 1 to 100,000.
   * @throws KilnValidationError (KILN_VALIDATION) naming `maxOutstandingRebirths` otherwise.
   * @default 16
   */
  readonly maxOutstandingRebirths?: number;
  /**
   * The shortest interval between two acknowledgements (NCMD `Kiln/Stored Through`, ADR 0037) to
   * one edge node, in ms. Only edge nodes whose NBIRTH declares `Kiln/Await Acks` get them.
   * From 0 to 3,600,000 (1 hour). @default 1000
   */
  readonly ackIntervalMs?: number;
  /**
   * Largest payload taken from an edge node (or STATE), in bytes, checked before it is decoded:
   * a larger one is not read (a DBIRTH of hundreds of thousands of metrics would hold the event
   * loop for tens of seconds), counted in `messages.oversized`, reported by `message-reject`, and
   * the edge node is distrusted as after a gap (rebirth request, reason `payload-too-large`). It
   * is not sent to the broker as an MQTT 5 CONNECT Maximum Packet Size: a broker drops, silently,
   * a message larger than that (MQTT 5 §3.1.2.11.4), so an edge node's oversize birth or data
   * would vanish uncounted (ADR 0043, amendment fix19ab). So it does not bound memory: MQTT.js
   * reads a whole packet, up to MQTT's 256 MB, before the host sees it; bound that with the
   * broker's own limit (mosquitto `message_size_limit`), which refuses at the publisher, or with
   * `mqtt.properties.maximumPacketSize` (then what is larger is lost at the broker, uncounted).
   * @default 4194304 (4 MiB)
   */
  readonly maxPayloadBytes?: number;
  /**
   * How long `stop()` waits for the store to take what is held, in ms: for the final
   * acknowledgements (before STATE offline, ADR 0037) and the drain after disconnecting together.
   * From 0 to 3,600,000 (1 hour). @default 10000
   */
  readonly drainTimeoutMs?: number;
  /**
   * How long `stop()`, after publishing STATE offline, keeps taking messages while edge nodes
   * whose primary host this is still publish what they sent before they saw it, in ms. It waits
   * until its own STATE offline has come back through the broker and no edge node is online
   * (each sent NDEATH, as Sparkplug 3.0 requires of an edge node whose primary host went offline,
   * `[tck-id-message-flow-edge-node-birth-publish-phid-offline]`), or this long.
   * From 0 to 3,600,000 (1 hour). @default 2000
   */
  readonly stopLingerMs?: number;
  /** Reconnect spacing, on the driver kit's backoff. @default { initialDelayMs: 1000, maxDelayMs: 30000 } */
  readonly reconnect?: ReconnectBackoff;
  /**
   * MQTT.js client options (username, password, TLS, clientId, keepalive, protocolVersion 4 or
   * 5...). The host sets `will`, `clean: true`, `reconnectPeriod: 0` (it reconnects itself) and,
   * for MQTT 5, a session expiry of 0, as Sparkplug requires. `connectTimeout` (ms, 1 to 3,600,000)
   * and `keepalive` (whole seconds, 0 to 65,535) are checked like the host's own durations.
   *
   * A `clientId` must be this host's alone, and `<clientId>-deaths` too (its death watch connects
   * so): a broker ends the older session of a client id at every CONNECT, so two clients sharing
   * one end each other's session; the host then names
   * `client id "<id>" (likely) in use by another client` in its link reason and health and
   * reconnects on a backoff that grows to `reconnect.maxDelayMs` (ADR 0043, amendment fix19q).
   * Every subscription's SUBACK is checked: one the broker refuses keeps the session from being
   * used, named with its topic filter and reason code, and retried on the backoff. A store stall
   * longer than 1.5 × `keepalive` ends the session (held, MQTT.js reads no PINGRESP), named as a
   * store stall: set `keepalive` above the longest stall you accept.
   * @throws KilnValidationError (KILN_VALIDATION) naming `mqtt.connectTimeout` or `mqtt.keepalive`.
   */
  readonly mqtt?: Omit<IClientOptions, "will" | "clean" | "reconnectPeriod">;
  /**
   * MQTT login of the death watch only (the host's second session, subscribed to the groups'
   * NDEATH; ADR 0043, amendments fix19o, fix19v): `username`, `password` and `clientId` given
   * here replace those of `mqtt` for it; everything else is taken from `mqtt`. Without a
   * `clientId` here the watch uses `<mqtt.clientId>-deaths` (or one MQTT.js makes up).
   *
   * Needed where the broker derives the client id from the login (mosquitto
   * `use_username_as_clientid true`, or `use_identity_as_username` / `use_subject_as_username`
   * with `use_username_as_clientid`): both sessions logging in as one user get one client id,
   * and each connect ends the other session. The host names that in its link reason and health
   * ("death watch replaced the main session") and retries on its growing backoff; give the
   * watch a user of its own, allowed to read `spBv1.0/<group>/NDEATH/+`.
   * @throws KilnValidationError (KILN_VALIDATION) naming `deathWatchMqtt` when it is not an
   *   object, or `deathWatchMqtt.<field>` for another field or a value that is not a string
   *   (`password`: a string or a Buffer).
   */
  readonly deathWatchMqtt?: Pick<IClientOptions, "username" | "password" | "clientId">;
  /** How long one connect attempt may take, in ms, from 1 to 3,600,000 (1 hour). @default 10000 */
  readonly connectTimeoutMs?: number;
  /**
   * How far ahead of the host's clock a live metric's timestamp may be, in ms. A live value
   * (birth or data) timestamped further ahead is stored but never shown in the live view (it
   * would hold back every later sample, as the live view never goes back in time): counted in
   * `samples.futureDated`, reported by `metric-issue` `future-timestamp`, the live value it would
   * have replaced marked uncertain. The one check of every time the host takes from the wire
   * (ADR 0043, amendment of 2026-12-01): a historical value this far ahead is stored as history and
   * counted and reported the same way; a DDEATH this far ahead marks its device stale at host time;
   * a refused value (mistyped, unstorable) this far ahead marks the live value at its own time.
   * @default 60000
   */
  readonly maxClockSkewMs?: number;
  /**
   * How much of the fleet the host keeps in memory (ADR 0030, amendment of 2026-12-02). Anyone who
   * may publish on `spBv1.0/<group>/#` can invent edge nodes, devices and metrics, and the host
   * holds state for each; past these caps what is new is refused (not stored, counted in
   * `health().refusals`, named in `health().problems` and by a `limit-refusal` event), and what
   * the host already follows keeps being stored. The caps bound memory; broker ACLs (one
   * identity per edge node, allowed only its own topics) are still what keeps one client from
   * publishing as another.
   */
  readonly limits?: SparkplugHostLimits;
  /** Time source (STATE and NCMD timestamps, stale marks, waits). @default SystemClock */
  readonly clock?: Clock;
  /** Randomness in [0, 1) for reconnect and retry jitter. @default Math.random */
  readonly random?: () => number;
}

/** One metric in the host's live view: its latest live (not historical) sample and where it comes from. */
export interface SparkplugLiveMetric {
  /** The sample: qualified tag name, value, the metric's own timestamp, quality. */
  readonly sample: Sample;
  /** The Sparkplug group. */
  readonly groupId: string;
  /** The edge node. */
  readonly edgeNodeId: string;
  /** Undefined for a metric of the edge node itself. */
  readonly deviceId?: string;
  /** The metric name as the edge node gave it. */
  readonly metric: string;
  /** The metric's Sparkplug data type, from its birth. */
  readonly datatype: SparkplugMetricDataType;
}

/**
 * Why the host asked an edge node for a rebirth. `samples-dropped`: the host lost samples (its
 * bound, a store refusal) while the node awaited acknowledgements; the node's acks stop until its
 * next birth, after which it sends again what was not acknowledged (ADR 0037). `birth-refused`: an
 * NBIRTH or DBIRTH refused whole (see {@link SparkplugHostEdgeNodeHealth.birthsRefused}).
 * `death-refused`: an NDEATH with no `bdSeq`, or one that is not an integer 0–255 (Sparkplug B
 * 3.0: bdSeq is 0–255), so it cannot be paired with a birth, or an NDEATH (or an online device's
 * DDEATH) that cannot be decoded at all: counted in `messages.malformed`, and the edge node's live
 * values are marked stale until its next NBIRTH. `messages-maybe-lost`: the
 * host held back reading from the broker (its store or queue was behind) and the broker may have
 * dropped messages meanwhile; the edge node's live values are uncertain and its data held until its
 * NBIRTH, and it is declared offline if none comes within `rebirthTimeoutMs` (ADR 0043, amendments
 * fix19o, fix19z).
 */
export type SparkplugRebirthReason =
  | "seq-gap"
  | "data-before-birth"
  | "unknown-alias"
  | "unknown-device"
  | "samples-dropped"
  | "payload-too-large"
  | "birth-refused"
  | "death-refused"
  | "messages-maybe-lost";

/** The state of one edge node as the host sees it. */
export interface SparkplugHostEdgeNodeHealth {
  /** The Sparkplug group. */
  readonly groupId: string;
  /** The edge node id. */
  readonly edgeNodeId: string;
  /**
   * `online` after a valid NBIRTH; `offline` after its NDEATH; `awaiting-rebirth` when its data
   * cannot be trusted (seq gap, data before birth, unknown alias, or the host's own reconnect)
   * until the next NBIRTH; `unknown` when it sent data but never a birth to this host.
   */
  readonly state: "online" | "offline" | "awaiting-rebirth" | "unknown";
  /** The bdSeq of its current (or last) NBIRTH. */
  readonly bdSeq?: number;
  /** The seq of the last message taken from it. */
  readonly lastSeq?: number;
  /** Its devices and whether each is online (DBIRTH seen, no DDEATH since). */
  readonly devices: readonly { readonly deviceId: string; readonly online: boolean }[];
  /** NBIRTHs taken since the host started. */
  readonly births: number;
  /** NCMD rebirth requests sent. */
  readonly rebirthsRequested: number;
  /** Rebirth requests held back by `rebirthIntervalMs`. */
  readonly rebirthsSuppressed: number;
  /**
   * Rebirth requests that waited their turn (`maxOutstandingRebirths`, or the store's room for
   * the births already asked for), counted once per wait; each is sent (then counted in
   * `rebirthsRequested`) when its turn comes, or dropped if a birth came first.
   */
  readonly rebirthsPaced: number;
  /**
   * Rebirth requests in a row whose turn ended after `rebirthTimeoutMs` with no answer begun,
   * since its last NBIRTH (reset by it).
   */
  readonly unansweredRebirths: number;
  /**
   * The shortest interval between two rebirth requests to it now, in ms: `rebirthIntervalMs`
   * doubled per unanswered request in a row (`unansweredRebirths`), up to 64 times and never
   * beyond `rebirthTimeoutMs` (or `rebirthIntervalMs` when that is larger), so an edge node whose
   * data keeps coming is asked again at least that often (ADR 0043, amendment fix19ab).
   */
  readonly rebirthIntervalMs: number;
  /** Messages whose `seq` was not the last one + 1 (mod 256). */
  readonly seqGaps: number;
  /**
   * DBIRTH and data messages that came without a valid NBIRTH in force: before the first, after
   * an NDEATH, or while awaiting the rebirth a gap asked for.
   */
  readonly dataBeforeBirth: number;
  /**
   * Data messages naming an alias, metric or device the births did not announce, or a metric by
   * an alias and a name the births gave to two metrics.
   */
  readonly unknownAliases: number;
  /** NDEATHs whose bdSeq did not match the current NBIRTH's: ignored. */
  readonly staleDeaths: number;
  /**
   * NBIRTHs and DBIRTHs refused whole: undecodable, over `maxPayloadBytes`, a metric name that
   * is not valid UTF-8, or a name or alias given twice (within the birth, or an alias already
   * given by the NBIRTH or another device of the session). Nothing of one is stored; a rebirth is
   * requested. A birth refused for such a reason is refused again at every rebirth: an edge node
   * whose trust is lost mostly so is named in `health().problems` with the last refusal's reason
   * (not as a suspected duplicate edge node id). The host's `maxPayloadBytes` must exceed the
   * edge node's largest birth (a DBIRTH carries every tag with its properties).
   */
  readonly birthsRefused: number;
  /** Metrics a birth gave another datatype than the birth before it (reported by `metric-issue` `retyped`). */
  readonly retypedMetrics: number;
  /** When the host last marked it offline (NDEATH), host time, ms since the Unix epoch. */
  readonly offlineSince?: number;
  /**
   * Acknowledgements (ADR 0037), while its current NBIRTH declared `Kiln/Await Acks`: the number
   * of its newest DDATA stored with all before it (`storedThrough`) and of the last one
   * acknowledged (`acknowledged`), in its session's numbering.
   */
  readonly acks?: { readonly storedThrough: number; readonly acknowledged: number };
  /** Acknowledgements (NCMD `Kiln/Stored Through`) sent to it since start. */
  readonly acksSent: number;
}

/** What {@link SparkplugHost.health} reports. */
export interface SparkplugHostHealth {
  /** The broker link: `connected`, `reconnecting`, `disconnected`, `closed`... */
  readonly link: DriverStatus;
  /** Why the link is in its state, where known. */
  readonly linkReason?: string;
  /**
   * This host's STATE as last published: online with its timestamp, or offline. `foreign`: the
   * newest STATE on this host's own topic with a timestamp newer than its session's, published by
   * someone else (a second host with this host id, or a spoof), seen by this process (found
   * retained at a (re)connect, or arriving while a session runs); kept until a session of this host
   * stamped after it has said online. Edge nodes follow the newest timestamp (Sparkplug 3.0.0 §5.x,
   * STATE), so they believe it, not this host: offline, they stop sending live data; online, they
   * will not believe this host's Will when it dies. The host outruns it, however far ahead it
   * is: once its clock has passed that timestamp it ends its session (a DISCONNECT, no Will) and
   * opens a new one, whose STATE is newer (counted in `outruns`; at most one a minute, each
   * costing stale marks and rebirths). Edge nodes with the default `maxHostClockSkewMs` (5
   * minutes) hold a STATE further ahead of their clock back only until their clock comes within
   * that, then follow it (amendment fix19c). Older foreign STATEs newer than the session are kept
   * too (up to 16) and outrun first, oldest first: which one an edge node follows depends on its
   * clock and its `maxHostClockSkewMs` (amendment fix19i; `problems` names them). `forgedOffline`: STATE offline
   * messages carrying exactly this session's timestamp that came while the session was connected
   * (so not its own Will): someone copied the retained timestamp; each makes edge nodes die and
   * rebirth. Only broker access control prevents these (publish on `spBv1.0/STATE/<hostId>` for
   * this host alone). Amendment fix19b of ADR 0043.
   */
  readonly state: {
    readonly online: boolean;
    readonly timestamp?: number;
    readonly foreign?: { readonly online: boolean; readonly timestamp: number; readonly seenAt: number };
    readonly forgedOffline?: { readonly count: number; readonly lastSeenAt: number };
    /** Sessions this host ended to outrun a foreign STATE, since start. */
    readonly outruns: number;
  };
  /** Every edge node the host has heard from, in the order it first did. */
  readonly edgeNodes: readonly SparkplugHostEdgeNodeHealth[];
  /**
   * Messages received on the group topics, those that could not be read or were refused (retained
   * births, data and deaths included; ignored, counted), and
   * those over `maxPayloadBytes` (not read; also counted as malformed).
   */
  readonly messages: { readonly received: number; readonly malformed: number; readonly oversized: number };
  /**
   * Samples: `received` (every metric value taken from a message), `stored` (written durably;
   * an identical re-delivery counts as stored, once in the database), `queued` (held now),
   * `conflicts` (refused by the store: another sample holds their (tag, timestamp)), `dropped`
   * (lost: bound reached, store refusal, stop timeout), `discarded` (not attributable: data
   * before birth, after a gap, unknown alias; never stored under a guessed name),
   * `unstorable` (no Kiln value: arrays, DataSet, Template, Bytes, File, out-of-range time),
   * `transient` (not stored, per `is_transient`), `historical` (stored, not in the live view),
   * `mistyped` (refused: a datatype other than the birth's, see `metric-issue`), `outOfOrder`
   * (live samples older than the metric's live value: stored as history, the live view never
   * goes back in time; one at the live value's very time with another value is the store's
   * conflict and does not replace it either), `futureDated` (samples, live or historical,
   * timestamped more than `maxClockSkewMs` ahead of the host's clock: stored, never in the live view).
   */
  readonly samples: {
    readonly received: number;
    readonly stored: number;
    readonly queued: number;
    readonly conflicts: number;
    readonly dropped: number;
    readonly discarded: number;
    readonly unstorable: number;
    readonly transient: number;
    readonly historical: number;
    readonly mistyped: number;
    readonly outOfOrder: number;
    readonly futureDated: number;
    /**
     * Metrics with no timestamp, neither their own nor their payload's (Sparkplug 3.0 requires
     * one on every birth and data metric): live ones taken at the host's receive time,
     * uncertain with the reason (never good); historical ones refused (also in `discarded`).
     * Each reported by `metric-issue` `no-timestamp` (ADR 0043, amendment fix19ab).
     */
    readonly untimed: number;
    /**
     * Samples held now: data of unverified edge nodes (the host may have missed a birth with a
     * new alias map), not stored, not acknowledged and not shown, until the NBIRTH answering the
     * rebirth request says how they decode (ADR 0043, amendment fix19z). Counted in `received`
     * only once released or refused.
     */
    readonly held: number;
    /**
     * Held samples stored uncertain (with the reason) instead of good: their edge node was
     * declared offline, died or was not born again in time, its device was not born again after
     * its NBIRTH, the host stopped, or the hold's bound was reached (oldest first). Held samples
     * whose alias decoding the NBIRTH changed are refused and counted in `discarded`. Not those
     * of an edge node that awaits acks: see `heldReturned`.
     */
    readonly heldUncertain: number;
    /**
     * Held samples of an edge node that awaits acks (`awaitHostAcks`, ADR 0037) not stored for
     * the reasons of `heldUncertain`: they were never acknowledged, so the edge node keeps them
     * and sends them again after its next birth, by name, to be stored good then (an uncertain
     * row stored now would make that copy a conflict). Not lost; counted in `received`.
     */
    readonly heldReturned: number;
  };
  /**
   * Store call failures: each failed attempt of a write or tag registration, timeouts and
   * refusals by the open breaker included (each retryable one is retried).
   */
  readonly storeErrors: number;
  /**
   * The store breaker (`store:samples`), shared by writes and tag registrations: it opens after
   * consecutive failures or timeouts, and the calls then wait on their backoff instead of
   * reaching the store (a problem is listed while it is not closed).
   */
  readonly storeBreaker: CircuitBreakerSnapshot;
  /**
   * Messages refused by a cap of {@link SparkplugHostLimits}, by cap: `maxEdgeNodes` counts every
   * message of an edge node not followed (not read), the others count refused births. Nothing of
   * them is stored.
   */
  readonly refusals: { readonly [limit in SparkplugHostLimit]: number };
  /** Problems in words (link down, store failing or behind, a cap reached); empty when all is well. */
  readonly problems: readonly string[];
}

/** Events of a {@link SparkplugHost}, by type. */
export interface SparkplugHostEvents {
  /** The broker link changed state. */
  "link-change": DriverStatusChange;
  /** An edge node or device went online (birth) or offline (death, or the host's own link loss). */
  "edge-node-change": {
    /** The Sparkplug group. */
    readonly groupId: string;
    /** The edge node. */
    readonly edgeNodeId: string;
    /** The device, when the change is a device's (DBIRTH, DDEATH). */
    readonly deviceId?: string;
    readonly state: SparkplugHostEdgeNodeHealth["state"];
    readonly bdSeq?: number;
    readonly reason: string;
  };
  /** The live view changed: the live (not historical) samples of one message, or stale marks. */
  "live-update": { readonly metrics: readonly SparkplugLiveMetric[] };
  /**
   * The host asked an edge node for a rebirth: `suppressed` false, an NCMD `Node Control/Rebirth`
   * was sent. A request held back by `rebirthIntervalMs` (or while the host has no broker session)
   * is counted in {@link SparkplugHostEdgeNodeHealth.rebirthsSuppressed}, and reported with
   * `suppressed` true at most once per `rebirthIntervalMs`, and never more than once a second, per edge node:
   * an edge node that keeps sending after a gap is not one event per message (review adv19k).
   * A request waiting its turn (`maxOutstandingRebirths`, ADR 0043 amendment fix19x) is reported
   * once, with `suppressed` true and the detail saying so, and counted in
   * {@link SparkplugHostEdgeNodeHealth.rebirthsPaced}; it is reported again (`suppressed` false)
   * when it is sent.
   */
  "rebirth-request": {
    /** The Sparkplug group. */
    readonly groupId: string;
    /** The edge node asked. */
    readonly edgeNodeId: string;
    readonly reason: SparkplugRebirthReason;
    readonly detail: string;
    readonly suppressed: boolean;
  };
  /** Samples were lost (see {@link SparkplugHostHealth.samples}). */
  "samples-drop": { readonly count: number; readonly reason: string; readonly conflicts?: readonly SampleConflict[] };
  /** A message could not be read or had to be ignored. */
  "message-reject": { readonly topic: string; readonly message: string };
  /**
   * One metric the host did not take as it came (issue 19). `datatype-mismatch`: a data value
   * whose datatype is not the one its birth gave (a Boolean metric sent as Int32 7): refused, not
   * stored, counted in `samples.mistyped`. `unstorable`: a live value the host cannot store (a
   * timestamp out of range...), counted in `samples.unstorable`. For both the live value the
   * metric had is marked (bad `BadTypeMismatch`, or uncertain last usable value) with `detail`
   * as its reason: it is no longer the metric's current value. `retyped`: a birth gave the metric
   * another datatype than the birth before it: taken under the new datatype, reported.
   * `future-timestamp`: a value timestamped more than `maxClockSkewMs` ahead of the host's
   * clock: stored, not shown in the live view; for a live one, the live value the metric had is
   * marked uncertain. `clock-step-back`: a live value of the session received after the one shown
   * but timestamped before it (the edge node's clock stepped back): stored, counted in
   * `samples.outOfOrder`, not shown; the live value shown is marked uncertain (ADR 0043, 19u).
   * `no-timestamp`: a metric with no timestamp of its own in a payload without one (Sparkplug
   * 3.0 requires one on every birth and data metric): a live value is taken at the host's receive
   * time, uncertain (`Uncertain`) with `detail` as reason, never good; a historical one cannot be
   * placed in time and is refused (counted in `samples.discarded`). Both counted in
   * `samples.untimed` (ADR 0043, amendment fix19ab).
   */
  "metric-issue": {
    /** The qualified tag name. */
    readonly tag: string;
    readonly groupId: string;
    readonly edgeNodeId: string;
    readonly deviceId?: string;
    /** The metric name as the edge node gave it. */
    readonly metric: string;
    readonly issue:
      "datatype-mismatch" | "unstorable" | "retyped" | "future-timestamp" | "clock-step-back" | "no-timestamp";
    readonly detail: string;
  };
  /**
   * A cap of {@link SparkplugHostLimits} refused a message: for `maxEdgeNodes`, a message of an
   * edge node not followed (not read, no state kept); for the others, a birth (refused whole,
   * the edge node distrusted as after any refused birth: its data discarded until a birth within
   * the caps, a rebirth requested).
   */
  "limit-refusal": {
    readonly limit: SparkplugHostLimit;
    /** The cap's value. */
    readonly max: number;
    readonly groupId: string;
    readonly edgeNodeId: string;
    readonly deviceId?: string;
    readonly topic: string;
    readonly detail: string;
  };
  /** A store call failed (`willRetry`: the batch is written again after a backoff). */
  "store-error": { readonly code: string; readonly message: string; readonly willRetry: boolean };
}

interface MetricInfo {
  readonly name: string;
  readonly datatype: SparkplugMetricDataType;
  readonly tag: string | undefined;
}

interface Birth {
  /** By alias as the decoder gives it: a number when a safe integer, else a bigint (one form per value). */
  readonly byAlias: Map<number | bigint, MetricInfo>;
  readonly byName: Map<string, MetricInfo>;
}

interface DeviceState {
  online: boolean;
  birth: Birth | undefined;
  /**
   * The birth a new NBIRTH of its edge node ended, until the device is born again (then the
   * metrics it declared and the new birth does not are released) or forgotten: still counted
   * against `limits.maxMetrics`, its tags still held (ADR 0030, amendment of 2026-12-02 "release").
   * At most one of `birth` and `retired` is defined.
   */
  retired?: Birth | undefined;
}

interface EdgeNodeState {
  readonly groupId: string;
  readonly edgeNodeId: string;
  state: SparkplugHostEdgeNodeHealth["state"];
  bdSeq: number | undefined;
  lastSeq: number | undefined;
  birth: Birth | undefined;
  readonly devices: Map<string, DeviceState>;
  /** Its offline devices, least recently online first (the order {@link SparkplugHost} forgets them in). */
  readonly downDevices: OldestFirstIndex<string, DeviceState>;
  /**
   * Who holds each alias in the edge node's current session: its NBIRTH (`deviceId` undefined)
   * and its online devices' births, kept as they change, so a DBIRTH checks its own aliases
   * against it in O(its metrics), not by copying every other device's (ADR 0030, amendment fix19g-index).
   */
  readonly aliases: Map<number | bigint, { readonly deviceId: string | undefined; readonly info: MetricInfo }>;
  lastRebirthAt: number | undefined;
  /** When a held-back request was last reported (`rebirth-request` with `suppressed`). */
  suppressedReportedAt?: number;
  offlineSince: number | undefined;
  births: number;
  rebirthsRequested: number;
  rebirthsSuppressed: number;
  rebirthsPaced: number;
  /**
   * Rebirth requests in a row whose turn ended unanswered (`rebirthTimeoutMs`), since its last
   * NBIRTH: its `rebirthIntervalMs` doubles with each, up to {@link REBIRTH_BACKOFF_MAX} times,
   * and it waits its turn behind edge nodes that answered (adv19 MEDIUM-1; amendment fix19y).
   */
  unansweredRebirths: number;
  seqGaps: number;
  dataBeforeBirth: number;
  unknownAliases: number;
  staleDeaths: number;
  ack: AckState | undefined;
  acksSent: number;
  birthsRefused: number;
  retypedMetrics: number;
  /** Host times at which it went from online to awaiting-rebirth (pruned to {@link FLAP_WINDOW_MS}). */
  trustLost: { readonly at: number; readonly birthRefused: boolean }[];
  /** The last birth refused (whole, or over `maxPayloadBytes`): host time and why. */
  lastBirthRefusal: { readonly at: number; readonly detail: string } | undefined;
  /** While awaiting-rebirth: since when and why. */
  awaiting: { readonly since: number; readonly reason: string } | undefined;
  /**
   * NDEATHs read on the death watch (a session of its own that is never held) whose copy the main
   * session, behind what the broker queued before it, has not taken yet (oldest first, at most
   * {@link DEATHS_TAKEN_KEPT}). Each is consumed by exactly one main-session copy with its key,
   * never by another death of its bdSeq (adv19, HIGH-1). While one is outstanding: the first birth
   * of its bdSeq taken is dead at once (`spent` then: a later birth of that bdSeq is not, an edge
   * node may reuse its bdSeq), its data stored as history only, and any other birth taken is
   * verified, not trusted. One whose main copy did not come within `rebirthTimeoutMs` of reading is
   * dropped: the broker dropped that copy (ADR 0043, amendments fix19o, fix19v, fix19w).
   */
  readonly deathsAhead: WatchedDeath[];
  /**
   * NDEATHs the main session took before the watch's copy came (oldest first, at most
   * {@link DEATHS_TAKEN_KEPT}): each is consumed by one copy read on the watch with its key, which
   * is then not ahead of anything (adv19p, H1), and never matches a later death (an edge node that
   * reuses its bdSeq and Will sends the same bytes each time: adv19r, H1). Dropped when no watch
   * copy came within `rebirthTimeoutMs` of reading (the watch was not subscribed then).
   */
  readonly deathsTaken: { readonly key: string; readonly read: ReadingClock }[];
  /** Host time of the last NDEATH of its current birth taken, on either session. */
  lastDeathAt: number | undefined;
  /**
   * Asked for a rebirth because the host may have missed its messages (`messages-maybe-lost`):
   * since when, why, and when the request went out (undefined while `rebirthIntervalMs` holds it
   * back). Declared offline `rebirthTimeoutMs` after the request if no NBIRTH came.
   */
  verify:
    | {
        readonly since: number;
        readonly reason: string;
        /** When the first request went out, with the held time then (the timeout counts only while the host reads). */
        requested: ReadingClock | undefined;
      }
    | undefined;
  /**
   * While offline: asked for a rebirth after a hold (it died during it, or its death was read on
   * the watch first), again every `rebirthIntervalMs` until this host time (its answer may have
   * been dropped too, the broker's queue for the host still full when it came).
   */
  reaskSince?: ReadingClock;
  /**
   * Its data held while it was unverified, oldest first (see {@link HeldMessage}); released ones
   * may linger at the front until compacted (`heldReleased` of them).
   */
  held: HeldMessage[];
  /** Samples in `held` not yet released. */
  heldSamples: number;
  /** Released messages still in `held` (the bound releases from the front; compacted lazily). */
  heldReleased: number;
}

/**
 * A data message of an edge node taken while it was unverified (`verify` set: the host may have
 * missed its messages, a birth with a new alias map among them): held, not stored, acknowledged
 * or shown, until the NBIRTH answering the rebirth request (a device's: its DBIRTH after it) shows
 * whether the alias map it was decoded with still holds (ADR 0043, amendment fix19z).
 */
interface HeldMessage {
  readonly deviceId: string | undefined;
  /** The birth its aliases were decoded with. */
  readonly birth: Birth;
  readonly payload: SparkplugPayload;
  readonly topic: string;
  /** Why the edge node was unverified when it came. */
  readonly reason: string;
  /**
   * Numbered for acks (`awaitHostAcks`, ADR 0037): never acknowledged, so its edge node keeps it
   * and sends it again after its next birth, by name.
   */
  readonly acked: boolean;
  /** A device's message, once its edge node's NBIRTH came: since when it awaits the device's DBIRTH. */
  awaitingDeviceBirth: ReadingClock | undefined;
  released: boolean;
}

/** An NDEATH read on the death watch ahead of the main session (see `EdgeNodeState.deathsAhead`). */
interface WatchedDeath {
  readonly bdSeq: number;
  /** `<bdSeq>@<payload timestamp>`: the main session's copy of it has the same. */
  readonly key: string;
  /** Host time it was read. */
  readonly at: number;
  /** When it was read, with the held time then (its main copy is awaited `rebirthTimeoutMs` of reading). */
  readonly read: ReadingClock;
  /** A birth of its bdSeq was made dead by it already. */
  spent: boolean;
  /** A birth taken while it was outstanding was verified for it already (once, so no loop of requests). */
  checked: boolean;
}

/**
 * A moment in host time and the host's held time then (see `SparkplugHost.#heldMs`): the time
 * since it during which the host could read from the broker is `now - at - (heldMs - held)`.
 */
interface ReadingClock {
  readonly at: number;
  readonly held: number;
}

/** What the host acknowledges to one edge node in its current birth (ADR 0037). */
interface AckState {
  readonly bdSeq: number;
  /** Number of the last DDATA taken (the NBIRTH's `Kiln/Await Acks` value, + 1 per DDATA). */
  received: number;
  /** Number of the newest DDATA all of whose samples, and those before, are settled. */
  stored: number;
  /** Number last acknowledged. */
  acknowledged: number;
  lastSentAt: number | undefined;
  /** DDATA taken and not yet settled, in order: its number and the writer's count after its push. */
  readonly tickets: { readonly message: number; readonly ticket: number }[];
  timer: TimerHandle | undefined;
  /** Samples were lost meanwhile: no ack until the next birth (a rebirth is asked for). */
  blocked: boolean;
}

/** A group filter's subscription options (Retain As Published with MQTT 5). */
type GroupSubscription = { qos: 0 | 1; rap?: boolean };

interface Session {
  readonly client: MqttClient;
  /** The STATE timestamp of this session: its birth and its Will carry the same one. */
  readonly timestamp: number;
  online: boolean;
  closing: boolean;
  /** Set by `stop()` while it waits for the edge nodes to hear STATE offline: called on each change it waits for. */
  onFarewellProgress?: () => void;
  /** Its own STATE offline, published by `stop()`, came back through the broker. */
  farewellEchoed?: boolean;
  /** The messages MQTT.js handed over and the host has not taken yet (set once subscribed). */
  inbox?: HostInbox;
  /** Its link went: what its inbox holds is being taken before the session ends. */
  lost?: boolean;
  /** Why it was lost when another client took over one of its MQTT sessions (see {@link SessionTakeover}). */
  takenOver?: string;
  /** The last error MQTT.js reported on the main session (`Keepalive timeout`...). */
  lastError?: string;
  /** Why it was lost when MQTT.js's keepalive ended it while the host held it (see {@link #heldTooLong}). */
  heldTooLong?: string;
  /**
   * The death watch: a second MQTT session subscribed to the groups' NDEATH only, whose messages
   * are taken at once (never held), so the broker never has to queue, nor drop, a death while the
   * main session is held (ADR 0043, amendment fix19o).
   */
  watch?: MqttClient;
  /** Host time at which the inbox began holding MQTT.js, while it does. */
  heldSince?: number;
  /** Set when the host ends this session to outrun a foreign STATE (the reconnect's reason). */
  outrun?: string;
  /** When the host last said online again on this session after a seq gap (`#restateOnline`, ms). */
  restatedAt?: number;
  /** Host time the death watch's CONNECT was started (see {@link SparkplugHost.#watchReplacedMain}). */
  watchConnectingAt?: number;
  /** Host time the main session's connection closed. */
  mainClosedAt?: number;
}

const DEFAULT_MAX_PAYLOAD_BYTES = 4_194_304;

/**
 * The edge node's default `maxHostClockSkewMs`, in ms (5 minutes): an edge node holds a STATE
 * further ahead of its clock than this back, and follows it once its clock has come within it.
 * The host outruns a foreign STATE whatever its distance (amendment fix19c of ADR 0043); this only
 * words the problem it reports.
 */
const HOST_STATE_OUTRUN_MS = 300_000;

/** A STATE on this host's topic newer than its session's, published by someone else. */
interface ForeignState {
  readonly online: boolean;
  readonly timestamp: number;
  readonly seenAt: number;
}
/**
 * The most foreign STATEs the host keeps at once (amendment fix19i of ADR 0043). Past it, the
 * older of the two closest in time is let go: edge nodes that follow it are released when the
 * newer one is outrun, that much later (counted in the problem health reports).
 */
const MAX_FOREIGN_STATES = 16;
/**
 * How often the host looks again at a foreign STATE it has not outrun yet, in ms: its clock may be
 * stepped, and a STATE far ahead is waited for in steps (amendment fix19c of ADR 0043).
 */
const HOST_STATE_OUTRUN_RECHECK_MS = 1_000;
/**
 * The shortest time between two answers (STATE online again) to forged STATE offline messages
 * with the session's own timestamp, in ms: each answer costs every edge node that died on the
 * forgery a rebirth and every live tag a stale mark, so a flood of forgeries is answered at most
 * once per this (amendment fix19c of ADR 0043, review adv19c LOW-1).
 */
const FORGED_OFFLINE_ANSWER_INTERVAL_MS = 5_000;
/** The shortest time between two outruns, in ms (each costs stale marks and rebirths). */
const HOST_STATE_OUTRUN_INTERVAL_MS = 60_000;

/**
 * A new session's timestamp: the clock's time, but after the previous session's, so a host whose
 * clock steps back never says STATE with an older timestamp than it said before (edge nodes
 * ignore that one: adv19f LOW-2, amendment fix19i of ADR 0043).
 */
function nextSessionTimestamp(now: number, previous: number | undefined): number {
  return previous === undefined || now > previous ? now : previous + 1;
}

/** An ISO date, or the number when it is not a date. */
function iso(at: number): string {
  return Number.isFinite(at) && Math.abs(at) <= 8.64e15 ? new Date(at).toISOString() : String(at);
}
/** Work per turn of the event loop when every live tag is marked stale (a link loss, a stop), in ms. */
const MARK_SLICE_MS = 5;
/** Tags marked between two looks at the clock. */
const MARK_STEP = 500;
/** The shortest spacing of `rebirth-request` events for held-back requests, per edge node, in ms. */
const SUPPRESSED_REPORT_MS = 1_000;
/**
 * The most a run of unanswered rebirth requests stretches an edge node's `rebirthIntervalMs`
 * (and never beyond `rebirthTimeoutMs`, or the base interval when that is larger).
 */
const REBIRTH_BACKOFF_MAX = 64;
const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;
/** How often the host looks at edge nodes awaiting a rebirth asked for after a possible loss, ms (at most). */
const VERIFY_SWEEP_MS = 250;
/** NDEATHs of one edge node the main session took whose watch copy has not come yet (see `EdgeNodeState.deathsTaken`). */
const DEATHS_TAKEN_KEPT = 8;
/** The main session closed this soon after its death watch began to connect is taken as replaced by it. */
const WATCH_REPLACED_WITHIN_MS = 2_000;
/** Sessions in a row so replaced before the host names it (see `SparkplugHost.#watchReplacedMain`). */
const WATCH_REPLACED_AFTER = 2;
/**
 * An edge node that loses the host's trust right after being born {@link FLAP_LOSSES} times
 * within this many ms is named in `health().problems` as flapping.
 */
/**
 * The longest metric name the host keeps in a birth (characters): a birth with a longer one is
 * refused whole. Four times the longest tag name, so a name that escaping lengthens past 256 is
 * still kept and counted `unstorable` as before.
 */
const NAME_KEPT_MAX = 4 * TAG_NAME_MAX;
const FLAP_WINDOW_MS = 60_000;
const FLAP_LOSSES = 3;
/** Rebirth request times kept for edge node ids beyond `limits.maxEdgeNodes` (forgotten ones). */
const REBIRTH_IDS_EXTRA = 10_000;
/** The most losses of trust kept per edge node for the flap check (the latest). */
const FLAP_KEPT = 64;
/**
 * Metrics a birth holds in the host's memory (for `limits.maxMetrics`): at least 1, so births
 * without metrics are bounded too (review 19h, H1: devices born with none escaped every cap).
 */
/**
 * The order in which waiting rebirth requests get their turn (lower first; a stable sort keeps
 * the oldest first within a rank): born before, then never answered a request in a row.
 */
function rebirthRank(node: EdgeNodeState): number {
  return (node.births > 0 ? 0 : 2) + (node.unansweredRebirths > 0 ? 1 : 0);
}

function birthSize(birth: Birth | undefined): number {
  return birth === undefined ? 0 : Math.max(1, birth.byName.size, birth.byAlias.size);
}
/**
 * Microseconds of a time in ms, as Kiln stores key rows (`Math.round(ms * 1000)`): the host keeps
 * each tag's newest stored time in these whole units (ADR 0043, amendment 19u).
 */
function microsOf(ms: number): number {
  return Math.round(ms * 1000);
}
/**
 * The time (ms) of the microsecond right after `micros`, the one place the host puts a row of its
 * own (a stale mark, a restated birth value) after another: 1 µs later in the edge node's clock.
 * Sparkplug timestamps are whole milliseconds, so no real sample can fall there. It is computed
 * from the integer, not as `ms + 0.001`: near 1.8e12 ms a float64 steps by 2^-12 ms, so adding
 * 0.001 ms moves 0.9765625 µs and after a few dozen steps a row rounds onto the one before it,
 * and the store drops it as a re-delivery (ADR 0043, amendments 19z and 19u). `(micros + 1) / 1000`
 * is within 0.13 µs of the exact value, so it always rounds back to `micros + 1`.
 */
function microAfter(micros: number): number {
  return (micros + 1) / 1000;
}
/**
 * Per tag, what the host stored for it, in the edge node's clock (ADR 0043, amendments 19z,
 * 2026-12-01 "by arrival" and 19u): `newestMicros`, the latest time (whole µs, {@link microsOf})
 * of a row it stored (a value not further ahead than `maxClockSkewMs`, or one of its own marks);
 * `newestIsMark`, whether that row is a stale mark; `markDue`, whether a value arrived since the
 * last mark (whatever its time: an edge clock that stepped back sends values older than the mark,
 * and they still need a mark of their own); `receivedMicros`, the time of the last live value
 * received since the last mark, by arrival: when the edge clock stepped back it is older than
 * `newestMicros`, and the mark also goes right after it (amendment 19u).
 */
interface StoredTrail {
  newestMicros: number;
  /**
   * The latest time of a row stored from live data, a restated birth or a mark (not from
   * historical data): a live value older than this is a clock step back. A replay of what the
   * edge node measured earlier is not (review 19s-fleet: a replayed row newer than a live value
   * still in flight made that value "stepped back", and the next birth restated it: stored twice).
   */
  liveMicros: number;
  newestIsMark: boolean;
  markDue: boolean;
  receivedMicros: number | undefined;
}
/** Added to the quality reason of a birth value the host stored after its stale mark instead of at its own time. */
const RESTATED_REASON = "restated by a birth after a loss of trust";
const DEFAULT_BACKOFF: ReconnectBackoff = { initialDelayMs: 1_000, maxDelayMs: 30_000 };

/** Every key of {@link SparkplugHostOptions}: any other is refused (a typo is not ignored). */
const HOST_OPTION_KEYS: OptionKeys<SparkplugHostOptions> = {
  brokerUrl: true,
  hostId: true,
  groups: true,
  store: true,
  registerTags: true,
  batching: {
    maxBatchSize: true,
    maxDelayMs: true,
    maxQueuedSamples: true,
    concurrency: true,
    retry: BACKOFF_OPTION_KEYS,
    writeTimeoutMs: true,
    breaker: true,
  },
  rebirthIntervalMs: true,
  rebirthTimeoutMs: true,
  maxOutstandingRebirths: true,
  ackIntervalMs: true,
  maxPayloadBytes: true,
  drainTimeoutMs: true,
  stopLingerMs: true,
  reconnect: BACKOFF_OPTION_KEYS,
  mqtt: true,
  deathWatchMqtt: true,
  connectTimeoutMs: true,
  maxClockSkewMs: true,
  limits: true,
  clock: true,
  random: true,
};

/**
 * A Sparkplug B 3.0 host application that stores every metric of its groups in a Kiln `Store`.
 *
 * - Session: clean, with its STATE death (`{"online":false,"timestamp":T}`, QoS 1, retained) as
 *   the MQTT Will; subscribes its own STATE topic and `spBv1.0/<group>/#` (QoS 1), then
 *   publishes STATE online with the same `T` (QoS 1, retained); republishes it when it sees its
 *   own STATE offline while connected. `stop()` publishes STATE offline (same `T`) and disconnects.
 * - Edge nodes: NBIRTH/DBIRTH give each edge node's and device's metric names, aliases and
 *   datatypes; NDATA/DDATA are resolved by alias; `seq` is checked per edge node (0–255,
 *   wrapping); bdSeq is paired with NDEATH (a death with another bdSeq is stale and ignored);
 *   NDEATH/DDEATH mark the metrics stale (live view: uncertain "last usable value"; store: a
 *   row without a value, bad `BadNoCommunication`, where the gap in trust begins).
 * - A seq gap, data before birth, an unknown alias or device: the edge node's data is not
 *   trusted (discarded and counted, never stored under a guessed name) until its next NBIRTH,
 *   and an NCMD `Node Control/Rebirth` is sent (at most one per `rebirthIntervalMs`).
 * - Samples (quality from the `StatusCode`/`Quality`/`StatusReason` properties, the metric's own
 *   timestamp) are batched into `store.samples.writeBatch`; historical metrics are stored but
 *   never change the live view; transient ones are not stored. A re-delivered identical sample
 *   is stored once and is not a loss; a different one at the same (tag, time) is a counted
 *   conflict. Memory is bounded, with backpressure on the broker connection.
 * - Reconnects on the driver kit's backoff, publishing STATE online again; after a reconnect every
 *   edge node must be born again before its data is taken.
 *
 * @example
 * const host = new SparkplugHost({ brokerUrl: "mqtt://127.0.0.1:1883", hostId: "scada", groups: ["plant-1"], store });
 * await host.start();
 * host.latest("plant-1/line-3/ald-1/chamber.pressure")?.sample.value;
 */
export class SparkplugHost {
  /** Events: link, edge nodes, live view, rebirth requests, drops. Handlers are isolated from the host. */
  readonly events: EventBusView<SparkplugHostEvents>;
  readonly #bus: EventBus<SparkplugHostEvents>;
  readonly #options: SparkplugHostOptions;
  readonly #clock: Clock;
  readonly #backoff: ReconnectBackoff;
  readonly #lifecycle: ConnectionLifecycle;
  readonly #takeover: SessionTakeover;
  /** The last session MQTT.js's keepalive ended while the host held it, for health (see {@link #heldTooLong}). */
  #lastHeldTooLong: string | undefined;
  readonly #writer: HostSampleWriter;
  readonly #stateTopic: string;
  readonly #groups: ReadonlySet<string>;
  readonly #nodes = new Map<string, EdgeNodeState>();
  readonly #live = new Map<string, SparkplugLiveMetric>();
  /** Live entries that are the host's own marks (stale, refused value...): never stored at their time. */
  readonly #marks = new WeakSet<SparkplugLiveMetric>();
  /** Per tag: what the host stored last for it, in the edge node's clock (see {@link StoredTrail}). */
  readonly #trails = new Map<string, StoredTrail>();
  readonly #registered = new Map<string, string>();
  /**
   * Per tag released (no current birth declares it) or forgotten: the µs of its newest stored
   * row, a stale mark, so a birth that restates its unchanged value later still lands after that
   * mark (ADR 0043, amendment fix19e). Bounded: at most `limits.maxMetrics` entries, the least
   * recently released dropped first.
   */
  readonly #releasedMarks = new OldestFirstIndex<string, number>();
  #session: Session | undefined;
  #lastState: { online: boolean; timestamp?: number } = { online: false };
  /**
   * Every STATE on its own topic newer than its session's from another publisher, oldest first, one
   * per timestamp (the last seen), at most MAX_FOREIGN_STATES; the newest is health `state.foreign`.
   * An edge node may follow any of them (its maxHostClockSkewMs and its clock decide which), so
   * each is outrun in turn, oldest first (amendment fix19i of ADR 0043, adv19h MEDIUM-1).
   */
  #foreign: ForeignState[] = [];
  /** Foreign STATEs let go at the MAX_FOREIGN_STATES bound, since start. */
  #foreignMerged = 0;
  /** The timestamp of this host's last session, so the next one is stamped after it (adv19f LOW-2). */
  #lastSessionTimestamp: number | undefined;
  /** STATE offline with the connected session's own timestamp: not its Will (health `state.forgedOffline`). */
  #forgedOffline: { count: number; lastSeenAt: number } | undefined;
  #outruns = 0;
  #lastOutrunAt: number | undefined;
  /** Host time of the last answer to a forged STATE offline, and the timer of a paced one. */
  #lastForgedAnswerAt: number | undefined;
  #forgedAnswerTimer: TimerHandle | undefined;
  #outrunTimer: TimerHandle | undefined;
  #started = false;
  #stopping = false;
  /** Aborted by `stop()`: ends a `start()` still waiting for the store. */
  readonly #starting = new AbortController();
  #counts = {
    received: 0,
    malformed: 0,
    oversized: 0,
    samples: 0,
    stored: 0,
    conflicts: 0,
    dropped: 0,
    discarded: 0,
    unstorable: 0,
    transient: 0,
    historical: 0,
    mistyped: 0,
    outOfOrder: 0,
    futureDated: 0,
    untimed: 0,
    heldUncertain: 0,
    heldReturned: 0,
    storeErrors: 0,
  };
  #problems = new Map<string, string>();
  /**
   * The rows of its own the host puts in a data push ({@link #trace}: a clock step's mark, a
   * value restated after a mark): the writer never drops them for its bound, since the trail
   * already counts them stored (ADR 0043, amendment fix19n).
   */
  readonly #ownRows = new WeakSet<Sample>();
  readonly #mustStore = (sample: Sample): boolean => this.#ownRows.has(sample);
  readonly #limits: Required<SparkplugHostLimits>;
  readonly #refusals: Record<SparkplugHostLimit, number> = {
    maxEdgeNodes: 0,
    maxDevicesPerEdgeNode: 0,
    maxMetricsPerBirth: 0,
    maxMetrics: 0,
  };
  /** Metrics of all current births together (checked against `limits.maxMetrics`). */
  #heldMetrics = 0;
  /** Samples of {@link HeldMessage}s not yet released or refused, all edge nodes together. */
  #heldSamples = 0;
  /** Every held message, oldest first (released ones are skipped): the bound releases from here. */
  readonly #heldOrder = new FifoQueue<{ readonly node: EdgeNodeState; readonly message: HeldMessage }>();
  /** Offline edge nodes and devices forgotten to make room under a cap (ADR 0030, amendment "release"). */
  #forgotten = { edgeNodes: 0, devices: 0 };
  /**
   * When a rebirth was last requested of each edge node id (host time), oldest first: at most
   * `limits.maxEdgeNodes` + 10,000, none older than `rebirthIntervalMs`.
   */
  readonly #rebirthSentAt = new OldestFirstIndex<string, number>();
  /** Births refused for a metric name whose tag name would be over 256 characters. */
  #namesTooLong = 0;
  /*
   * What the host may forget to make room under `limits`, each in the order it would be forgotten
   * (filed again at each change), so forgetting k of them costs O(k) whatever their number, and
   * whatever was forgotten before (ADR 0030, amendments fix19e, fix19g-index): edge nodes never born (first under `maxEdgeNodes`),
   * born edge nodes not online (by when they stopped being online, host time) and offline devices
   * (by when they went offline). Online ones are in none of them.
   */
  readonly #unbornNodes = new OldestFirstIndex<EdgeNodeState, true>();
  readonly #downNodes = new OldestFirstIndex<EdgeNodeState, number>();
  readonly #downDevices = new OldestFirstIndex<
    DeviceState,
    { readonly node: EdgeNodeState; readonly id: string; readonly at: number }
  >();
  /** Every sample the writer accepted before this index is settled. */
  #settledThrough = 0;
  /** Edge nodes asked for a rebirth because messages may have been lost (see `EdgeNodeState.verify`). */
  readonly #verifying = new Set<EdgeNodeState>();
  /**
   * Offline edge nodes to ask for a rebirth after a hold, whose request `rebirthIntervalMs` held
   * back (they may have been born again in a message the broker dropped), with the reason.
   */
  readonly #reask = new Map<EdgeNodeState, string>();
  /**
   * Rebirth requests out (see `maxOutstandingRebirths`): when each was sent (reading clock), the
   * samples its answer is expected to bring, and once its NBIRTH is taken, the writer's count of
   * accepted samples its births are stored through (the slot is free once settled past it).
   */
  readonly #rebirthsOut = new Map<
    EdgeNodeState,
    { readonly sent: ReadingClock; readonly size: number; storedThrough: number | undefined }
  >();
  /** Rebirth requests waiting their turn, oldest first (insertion order), each the last reason asked. */
  readonly #rebirthsWaiting = new Map<
    EdgeNodeState,
    { reason: SparkplugRebirthReason; detail: string; readonly since: number }
  >();
  #verifyTimer: TimerHandle | undefined;
  /**
   * NDEATHs read on the death watch for edge nodes the host did not know yet (their NBIRTH may
   * still wait for the held main session), by `<group>/<edge node>#<bdSeq>`, oldest first, at
   * most `limits.maxEdgeNodes`: a birth of that bdSeq taken later is dead at once, as for a
   * known edge node (ADR 0043, amendment fix19v; adv19r H1).
   */
  readonly #unknownDeaths = new OldestFirstIndex<string, WatchedDeath>();
  /** Sessions in a row whose main session the broker closed as its own death watch connected (see {@link #watchReplacedMain}). */
  #watchReplacements = 0;
  /** Host time the host held its broker sessions in all, the sessions ended (see {@link #heldMs}). */
  #heldBefore = 0;
  /**
   * The last hold's end, while births taken may still be ones the broker queued before or
   * during it: an edge node first born then is verified like those online at its end (fix19v).
   */
  #aftermath: { readonly reason: string; readonly since: ReadingClock } | undefined;

  /**
   * Checks the options; connects nothing (see {@link SparkplugHost.start}).
   * @throws KilnValidationError `KILN_VALIDATION` for an invalid host or group id (empty, or
   *   holding `+`, `/`, `#`), no group, a bad `reconnect` backoff or batching option, a missing
   *   store, or a `brokerUrl` that is not a URL with an MQTT scheme and a host (`localhost:1883`);
   *   also for an option key the host does not know (a typo such as `rebirthIntervalMS` is
   *   refused, not ignored; inside `reconnect`, `batching` and `batching.retry` too, by its path),
   *   a group named twice (`groups[i]`), and an `mqtt.protocolVersion`
   *   other than 4 or 5. Nothing is done before the check.
   */
  constructor(options: SparkplugHostOptions) {
    checkOptionShape("Sparkplug host options", options, HOST_OPTION_KEYS);
    this.#options = options;
    const groups = Array.isArray(options.groups) ? options.groups : [];
    const twice = groups.findIndex((group, index) => groups.indexOf(group) !== index);
    if (twice >= 0)
      throw new KilnValidationError("Sparkplug host options", [
        {
          path: `groups[${twice}]`,
          message: `names the group ${JSON.stringify(groups[twice])} a second time: name each group once`,
        },
      ]);
    checkSparkplugIds(
      { hostId: options.hostId, ...Object.fromEntries(groups.map((group, index) => [`groups[${index}]`, group])) },
      "Sparkplug host options",
    );
    const issues = [];
    if (groups.length === 0) issues.push({ path: "groups", message: "must name at least one Sparkplug group" });
    if (typeof options.store?.samples?.writeBatch !== "function") {
      issues.push({ path: "store", message: "must be a Kiln Store (store.samples.writeBatch)" });
    }
    const batching = options.batching ?? {};
    for (const [field, value, min] of [
      ["maxBatchSize", batching.maxBatchSize, 1],
      ["maxQueuedSamples", batching.maxQueuedSamples, 1],
      ["concurrency", batching.concurrency, 1],
    ] as const) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
        issues.push({ path: `batching.${field}`, message: `must be a whole number from ${min}` });
      }
    }
    issues.push(
      ...durationIssues([
        ["rebirthIntervalMs", options.rebirthIntervalMs, 0],
        ["rebirthTimeoutMs", options.rebirthTimeoutMs, 1],
        ["drainTimeoutMs", options.drainTimeoutMs, 0],
        ["stopLingerMs", options.stopLingerMs, 0],
        ["ackIntervalMs", options.ackIntervalMs, 0],
        ["connectTimeoutMs", options.connectTimeoutMs, 1],
        ["batching.maxDelayMs", batching.maxDelayMs, 0],
        ["batching.writeTimeoutMs", batching.writeTimeoutMs, 1],
        ["batching.breaker.recoveryTimeMs", batching.breaker?.recoveryTimeMs, 1],
      ]),
      ...mqttTimingIssues(options.mqtt),
    );
    const watchLogin: unknown = options.deathWatchMqtt;
    if (watchLogin !== undefined) {
      if (typeof watchLogin !== "object" || watchLogin === null || Array.isArray(watchLogin))
        issues.push({ path: "deathWatchMqtt", message: "must be an object of username, password, clientId" });
      else
        for (const [field, value] of Object.entries(watchLogin)) {
          if (!["username", "password", "clientId"].includes(field))
            issues.push({
              path: `deathWatchMqtt.${field}`,
              message: "is not a death watch login field (username, password, clientId)",
            });
          else if (
            value !== undefined &&
            typeof value !== "string" &&
            !(field === "password" && Buffer.isBuffer(value))
          )
            issues.push({ path: `deathWatchMqtt.${field}`, message: "must be a string" });
        }
    }
    const outstanding = options.maxOutstandingRebirths;
    if (outstanding !== undefined && (!Number.isSafeInteger(outstanding) || outstanding < 1 || outstanding > 100_000))
      issues.push({ path: "maxOutstandingRebirths", message: "must be a whole number from 1 to 100,000" });
    const skew = options.maxClockSkewMs;
    if (skew !== undefined && (!Number.isFinite(skew) || skew < 0)) {
      issues.push({ path: "maxClockSkewMs", message: "must be a finite number of ms from 0" });
    }
    for (const [field, value] of Object.entries(options.limits ?? {})) {
      if (!(field in DEFAULT_LIMITS))
        issues.push({ path: `limits.${field}`, message: "is not a Sparkplug host limit" });
      else if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 1))
        issues.push({ path: `limits.${field}`, message: "must be a whole number from 1" });
    }
    if (issues.length > 0) throw new KilnValidationError("Sparkplug host options", issues);
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    checkMaxPayloadBytes("Sparkplug host options", options.maxPayloadBytes);
    checkBrokerUrl("Sparkplug host options", options.brokerUrl);
    this.#backoff = options.reconnect ?? DEFAULT_BACKOFF;
    checkBackoff(this.#backoff, "reconnect");
    if (batching.retry !== undefined) checkBackoff(batching.retry, "batching.retry");
    const { failureThreshold, recoveryTimeMs } = batching.breaker ?? {};
    if (batching.breaker !== undefined && !(Number.isSafeInteger(failureThreshold) && failureThreshold! >= 1)) {
      issues.push({ path: "batching.breaker.failureThreshold", message: "must be a whole number from 1" });
    }
    if (batching.breaker !== undefined && recoveryTimeMs === undefined) {
      issues.push({
        path: "batching.breaker.recoveryTimeMs",
        message: "must be a number of ms from 1 to 3600000 (1 hour)",
      });
    }
    if (issues.length > 0) throw new KilnValidationError("Sparkplug host options", issues);
    this.#groups = new Set(groups);
    this.#clock = options.clock ?? new SystemClock();
    this.#bus = new EventBus<SparkplugHostEvents>({ now: () => this.#clock.now() });
    this.events = this.#bus;
    this.#stateTopic = sparkplugTopic({ type: "STATE", hostId: options.hostId });
    this.#lifecycle = new ConnectionLifecycle({
      name: `sparkplug host ${options.hostId}`,
      clock: this.#clock,
      ...(options.random === undefined ? {} : { random: options.random }),
    });
    this.#lifecycle.onStatusChange((change) => void this.#bus.publish("link-change", change));
    this.#takeover = new SessionTakeover(this.#clock, 2 * this.#backoff.maxDelayMs);
    this.#writer = new HostSampleWriter(
      options.store,
      this.#clock,
      {
        written: (stored, conflicts) => {
          this.#counts.stored += stored;
          if (conflicts.length > 0) {
            this.#counts.conflicts += conflicts.length;
            void this.#bus.publish("samples-drop", {
              count: conflicts.length,
              reason: "another sample already holds their (tag, timestamp) in the store",
              conflicts,
            });
          }
          this.#problems.delete("store");
        },
        dropped: (count, reason) => {
          this.#counts.dropped += count;
          this.#problems.set(
            "dropped",
            `samples dropped: ${this.#counts.dropped} in all, the last ${count} at ${new Date(this.#clock.now()).toISOString()}: ${reason}`,
          );
          void this.#bus.publish("samples-drop", { count, reason });
          // Which edge node they belonged to is not known here: no edge node awaiting acks is
          // acknowledged past them. Each is asked for a rebirth, after which it sends again what
          // was not acknowledged.
          for (const node of this.#nodes.values()) {
            if (node.ack === undefined || node.ack.blocked) continue;
            node.ack.blocked = true;
            this.#requestRebirth(node, "samples-dropped", `${count} samples dropped by the host: ${reason}`);
          }
        },
        settled: (through) => this.#onSettled(through),
        failed: (error, willRetry) => {
          this.#counts.storeErrors++;
          const message = (error as Error)?.message ?? String(error);
          this.#problems.set("store", `store: ${message}`);
          void this.#bus.publish("store-error", {
            code: KilnError.is(error) ? error.code : "KILN_STORE_ERROR",
            message,
            willRetry,
          });
        },
        registered: () => this.#problems.delete("store"),
      },
      batching,
      options.random,
    );
  }

  /**
   * Opens the store (`store.open([])`, idempotent) and connects to the broker. Resolves after
   * the first connect attempt, whatever its outcome: when the broker is unreachable the host goes
   * on trying in the background on its backoff (see {@link SparkplugHost.health}).
   *
   * The store is opened under the writer's store policy, like every store call of the host: each
   * attempt ends after `batching.writeTimeoutMs`, through the store breaker, retried on the
   * backoff while the error is retryable (a store down or hanging), so `start()` waits for the
   * store until it opens or `stop()` is called.
   * @throws KilnError `KILN_LIFECYCLE` when called twice; `KILN_ABORTED` when `stop()` came first;
   *   what `store.open` throws when it is not retryable.
   */
  async start(): Promise<void> {
    if (this.#started)
      throw new KilnError("KILN_LIFECYCLE", "This Sparkplug host was already started; make a new one.");
    this.#started = true;
    await this.#writer.openStore(this.#starting.signal);
    try {
      await this.#lifecycle.connect((signal) => this.#open(signal));
    } catch (error) {
      if (this.#stopping) return;
      if (KilnError.is(error, "KILN_AUTHENTICATION_FAILED")) throw error;
      void this.#reconnect(`first connect failed: ${(error as Error).message}`);
    }
  }

  /** Resolves when the host next has a live broker session with its STATE online (at once when it has). */
  whenConnected(signal?: AbortSignal): Promise<void> {
    return this.#lifecycle.whenConnected(signal);
  }

  /**
   * Stops: when an edge node awaits acknowledgements (ADR 0037), first waits for the store to
   * settle every sample taken so far and acknowledges what is stored to each such edge node;
   * then publishes STATE offline (the session's timestamp), keeps taking messages until the
   * edge nodes have answered it with NDEATH (at most `stopLingerMs`) and disconnects, then waits for the
   * store to take every sample held (both waits on the store together at most `drainTimeoutMs`;
   * what is left is dropped and counted). What edge nodes publish between the final ack and their
   * NDEATH is stored but not acknowledged: they send it again to the next host, which stores it
   * once. Idempotent. Does not close the store.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#lifecycle.close();
    this.#stopping = true;
    this.#starting.abort(new KilnError("KILN_ABORTED", "the Sparkplug host was stopped while it waited for its store"));
    if (this.#verifyTimer !== undefined) this.#clock.clearTimeout(this.#verifyTimer);
    if (this.#outrunTimer !== undefined) this.#clock.clearTimeout(this.#outrunTimer);
    this.#outrunTimer = undefined;
    if (this.#forgedAnswerTimer !== undefined) this.#clock.clearTimeout(this.#forgedAnswerTimer);
    this.#forgedAnswerTimer = undefined;
    this.#verifyTimer = undefined;
    const drainTimeoutMs = this.#options.drainTimeoutMs ?? 10_000;
    const drainUntil = this.#clock.now() + drainTimeoutMs;
    await this.#lifecycle.close(async () => {
      const session = this.#session;
      if (session === undefined) return;
      await session.inbox?.flush();
      this.#settleAllHeld("the host stopped before an NBIRTH verified it");
      // The marks of the host's stop (below), pushed now so the writer stores them while the
      // final acks and the goodbye take their time; a value taken after them gets its own.
      await this.#markAllStale("host stopped");
      let sent = false;
      if (session.client.connected) {
        // While the edge nodes still listen in their sessions: the final acks (ADR 0037).
        await this.#finalAcks(drainTimeoutMs);
        // Its own STATE offline coming back is not a reason to say online again.
        session.online = false;
        // Bounded like the edge node's goodbye: a broker that stopped answering holds a QoS 1
        // publish (and a graceful DISCONNECT) until the keepalive gives up. Not sent in time:
        // the broker publishes the Will (the same STATE offline) once it notices.
        sent = await boundedGoodbye(
          session.client.publishAsync(
            this.#stateTopic,
            Buffer.from(encodeHostState({ online: false, timestamp: session.timestamp })),
            { qos: 1, retain: true },
          ),
          this.#clock,
        );
        // DDATA an edge node sent before it saw the STATE offline is still on its way: taking
        // messages until it died keeps the host from dropping it unseen.
        if (sent) await this.#awaitFarewell(session);
      }
      await session.inbox?.flush();
      this.#session = undefined;
      session.closing = true;
      this.#lastState = { online: false, timestamp: session.timestamp };
      session.watch?.end(true);
      await endSession(session.client, this.#clock, sent && session.client.connected);
    });
    // Nothing more is taken: every tag whose last stored row is still a value gets its stale mark
    // ("host stopped"), 1 µs after it, before the writer drains. Otherwise history would read the
    // last value good across the host's downtime, whatever the edge node did meanwhile (ADR 0043,
    // amendment 19u).
    this.#settleAllHeld("the host stopped before an NBIRTH verified it");
    await this.#markAllStale("host stopped");
    // One budget for both waits on the store: the final acks' and this drain's.
    await this.#writer.drain(Math.max(0, drainUntil - this.#clock.now()));
    this.#writer.reset("host stopped");
  }

  /**
   * Before STATE offline (after which an edge node ends its session and no longer takes acks
   * for it): waits until the store has settled every sample taken so far (at most `timeoutMs`,
   * dropping nothing), then acknowledges to every edge node awaiting acks what is stored, at once
   * (not held back by `ackIntervalMs`). A sample not settled by then is not acknowledged; nor is
   * anything after a drop (acks stop at a drop until the edge node's next birth).
   */
  async #finalAcks(timeoutMs: number): Promise<void> {
    const awaiting = (): EdgeNodeState[] =>
      [...this.#nodes.values()].filter((node) => node.ack !== undefined && !node.ack.blocked);
    if (awaiting().length === 0) return;
    await this.#writer.whenSettled(this.#writer.accepted, timeoutMs);
    for (const node of awaiting()) {
      const ack = node.ack!;
      if (ack.timer !== undefined) this.#clock.clearTimeout(ack.timer);
      ack.timer = undefined;
      this.#sendAck(node, ack);
    }
  }

  /**
   * Resolves once the session's own STATE offline came back and no edge node is online, or after
   * `stopLingerMs`, or when the link goes.
   */
  #awaitFarewell(session: Session): Promise<void> {
    // A death read on the watch is ahead of what the edge node sent before it: the main session's
    // own NDEATH (behind that data) ends the wait for it.
    const done = (): boolean =>
      !session.client.connected ||
      (session.farewellEchoed === true &&
        [...this.#nodes.values()].every(
          (node) => node.state !== "online" && !node.deathsAhead.some((death) => death.bdSeq === node.bdSeq),
        ));
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        session.client.off("close", finish);
        session.onFarewellProgress = undefined;
        resolve();
      };
      const timer = setTimeout(finish, this.#options.stopLingerMs ?? 2_000);
      session.client.on("close", finish);
      session.onFarewellProgress = () => {
        if (done()) finish();
      };
    });
  }

  /** Stops the host. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** The live view entry of a qualified tag name (see {@link qualifiedTagName}), or undefined. */
  latest(tag: string): SparkplugLiveMetric | undefined {
    return this.#live.get(tag);
  }

  /** The live view: every metric's latest live sample, by qualified tag name. */
  live(): ReadonlyMap<string, SparkplugLiveMetric> {
    return this.#live;
  }

  /** The host's state: link, STATE, edge nodes, counters, problems. */
  health(): SparkplugHostHealth {
    const problems = [...this.#problems.values()];
    if (this.#lifecycle.status !== "connected" && this.#started && !this.#stopping) {
      problems.push(
        `broker link ${this.#lifecycle.status}${this.#lifecycle.reason ? `: ${this.#lifecycle.reason}` : ""}`,
      );
    }
    const foreign = this.#foreign.at(-1);
    const older = this.#foreign.slice(0, -1);
    if (foreign !== undefined) {
      const at = iso(foreign.timestamp);
      const ahead = foreign.timestamp - this.#clock.now();
      const outrun = `this host starts a new session stamped after it once its clock has passed ${at} (at most one such new session a minute)${
        ahead > HOST_STATE_OUTRUN_MS
          ? `; it is ${ahead} ms ahead of this host's clock: edge nodes with the default maxHostClockSkewMs (${HOST_STATE_OUTRUN_MS} ms) hold it back until their clock comes within that of it and then follow it, those with a larger one (or Infinity) follow it at once`
          : ""
      }${
        older.length === 0
          ? ""
          : `; ${older.length} older foreign STATE(s) (${older.map((state) => `${state.online ? "online" : "offline"} at ${iso(state.timestamp)}`).join(", ")}), which edge nodes may follow meanwhile, are outrun first, oldest first, each once the clock has passed it`
      }${
        this.#foreignMerged === 0
          ? ""
          : `; ${this.#foreignMerged} more were let go beyond the bound of ${MAX_FOREIGN_STATES}, each released when the next newer one is outrun`
      }`;
      problems.push(
        `a STATE ${foreign.online ? "online" : "offline"} for this host id with a newer timestamp (${at}, ${foreign.timestamp}) than this session's was published by someone else, seen at ${new Date(foreign.seenAt).toISOString()} (a second host with this host id, or a spoof): edge nodes following this host believe it, not this host (offline: they send no live data; online: they will not believe this host's Will); ${outrun}; give publish on ${this.#stateTopic} to this host alone in the broker's access control`,
      );
    }
    const forged = this.#forgedOffline;
    if (forged !== undefined) {
      problems.push(
        `${forged.count} STATE offline message(s) with this session's own timestamp came while the session was connected, the last at ${new Date(forged.lastSeenAt).toISOString()}: not this host's Will, someone copied the retained timestamp (each makes edge nodes die; this host says online again at most once every ${FORGED_OFFLINE_ANSWER_INTERVAL_MS} ms, and each answer makes them rebirth, their values marked stale meanwhile); give publish on ${this.#stateTopic} to this host alone in the broker's access control`,
      );
    }
    const takenOver = this.#takeover.problem();
    if (takenOver !== undefined && this.#lifecycle.status === "connected") problems.push(takenOver);
    // A keepalive lost to a store stall stays named (while reconnecting, the link's reason says it)
    // until a session has gone one keepalive timeout unheld (a reconnect alone proves nothing: the
    // store may still be behind).
    const current = this.#session;
    if (
      current !== undefined &&
      current.heldSince === undefined &&
      this.#clock.now() - current.timestamp >= (this.#options.mqtt?.keepalive ?? 60) * 1_500
    )
      this.#lastHeldTooLong = undefined;
    if (this.#lastHeldTooLong !== undefined && this.#lifecycle.status === "connected")
      problems.push(this.#lastHeldTooLong);
    const breaker = this.#writer.breaker;
    if (breaker.state.state !== "closed") {
      problems.push(
        `store breaker ${breaker.state.state}: the store keeps failing or timing out; writes wait and retry`,
      );
    }
    if (this.#writer.congested)
      problems.push(`the store is behind: ${this.#writer.held} samples held, reading from the broker paused`);
    const now = this.#clock.now();
    for (const node of this.#nodes.values()) {
      const name = `${node.groupId}/${node.edgeNodeId}`;
      if (node.awaiting !== undefined)
        problems.push(
          `edge node ${name} awaiting rebirth since ${new Date(node.awaiting.since).toISOString()} (${node.awaiting.reason}): its data is discarded and its live values are stale`,
        );
      if (node.verify !== undefined)
        problems.push(
          `edge node ${name} unverified since ${new Date(node.verify.since).toISOString()} (${node.verify.reason}): its live values are uncertain and its data is held (${node.heldSamples} samples: not stored, acknowledged or shown) until it answers the rebirth request${node.verify.requested === undefined ? " (not sent yet: rebirthIntervalMs, or waiting its turn: maxOutstandingRebirths)" : ""}; declared offline if no NBIRTH comes within rebirthTimeoutMs of the host reading from the broker (time held not counted)`,
        );
      const waiting = this.#rebirthsWaiting.get(node);
      if (waiting !== undefined)
        problems.push(
          `edge node ${name} waits its turn for a rebirth request since ${new Date(waiting.since).toISOString()} (${waiting.reason}: ${waiting.detail}): ${this.#rebirthsOut.size} requests out (maxOutstandingRebirths ${this.#maxOutstandingRebirths}), ${this.#writer.held} samples held by the writer; its live values are not good until it is born again`,
        );
      if (this.#historyOnly(node))
        problems.push(
          `edge node ${name} offline: its NDEATH was read on the death watch before the main session's copy, so its data is taken as history only until it is born again (a rebirth is asked for; after rebirthTimeoutMs of reading without that copy, as data before a birth, every rebirthIntervalMs)`,
        );
      while (node.trustLost.length > 0 && node.trustLost[0]!.at < now - FLAP_WINDOW_MS) node.trustLost.shift();
      // A birth refused for a reason of its own (too large, a name twice...) is refused again at
      // every rebirth: that is the cause to name, not a duplicate edge node id.
      const refusals = node.trustLost.filter((loss) => loss.birthRefused).length;
      if (node.trustLost.length >= FLAP_LOSSES && refusals * 2 >= node.trustLost.length)
        problems.push(
          `edge node ${name} loses trust at every birth: ${refusals} of its births refused in ${FLAP_WINDOW_MS / 1_000} s, the last: ${node.lastBirthRefusal?.detail ?? "(unknown)"} (a birth over maxPayloadBytes is refused at every rebirth: the host's maxPayloadBytes must exceed the edge node's largest birth)`,
        );
      else if (node.trustLost.length >= FLAP_LOSSES)
        problems.push(
          `edge node ${name} is flapping: born and distrusted again ${node.trustLost.length} times in ${FLAP_WINDOW_MS / 1_000} s, ${node.births} NBIRTHs in all (suspected duplicate edge node id: two edge nodes publishing as ${name}, or births of two sessions interleaving)`,
        );
    }
    const edgeNodes = [...this.#nodes.values()].map((node): SparkplugHostEdgeNodeHealth => ({
      groupId: node.groupId,
      edgeNodeId: node.edgeNodeId,
      state: node.state,
      ...(node.bdSeq === undefined ? {} : { bdSeq: node.bdSeq }),
      ...(node.lastSeq === undefined ? {} : { lastSeq: node.lastSeq }),
      devices: [...node.devices].map(([deviceId, device]) => ({ deviceId, online: device.online })),
      births: node.births,
      rebirthsRequested: node.rebirthsRequested,
      rebirthsSuppressed: node.rebirthsSuppressed,
      rebirthsPaced: node.rebirthsPaced,
      unansweredRebirths: node.unansweredRebirths,
      rebirthIntervalMs: this.#rebirthInterval(node),
      seqGaps: node.seqGaps,
      dataBeforeBirth: node.dataBeforeBirth,
      unknownAliases: node.unknownAliases,
      staleDeaths: node.staleDeaths,
      birthsRefused: node.birthsRefused,
      retypedMetrics: node.retypedMetrics,
      ...(node.offlineSince === undefined ? {} : { offlineSince: node.offlineSince }),
      ...(node.ack === undefined
        ? {}
        : { acks: { storedThrough: node.ack.stored, acknowledged: node.ack.acknowledged } }),
      acksSent: node.acksSent,
    }));
    return {
      link: this.#lifecycle.status,
      ...(this.#lifecycle.reason === undefined ? {} : { linkReason: this.#lifecycle.reason }),
      state: {
        ...this.#lastState,
        ...(foreign === undefined ? {} : { foreign: { ...foreign } }),
        ...(this.#forgedOffline === undefined ? {} : { forgedOffline: { ...this.#forgedOffline } }),
        outruns: this.#outruns,
      },
      edgeNodes,
      messages: {
        received: this.#counts.received,
        malformed: this.#counts.malformed,
        oversized: this.#counts.oversized,
      },
      samples: {
        received: this.#counts.samples,
        stored: this.#counts.stored,
        queued: this.#writer.held,
        conflicts: this.#counts.conflicts,
        dropped: this.#counts.dropped,
        discarded: this.#counts.discarded,
        unstorable: this.#counts.unstorable,
        transient: this.#counts.transient,
        historical: this.#counts.historical,
        mistyped: this.#counts.mistyped,
        outOfOrder: this.#counts.outOfOrder,
        futureDated: this.#counts.futureDated,
        untimed: this.#counts.untimed,
        held: this.#heldSamples,
        heldUncertain: this.#counts.heldUncertain,
        heldReturned: this.#counts.heldReturned,
      },
      storeErrors: this.#counts.storeErrors,
      storeBreaker: breaker,
      refusals: { ...this.#refusals },
      problems,
    };
  }

  // ---- session -------------------------------------------------------------------------------

  async #open(signal: AbortSignal): Promise<void> {
    const timestamp = nextSessionTimestamp(this.#clock.now(), this.#lastSessionTimestamp);
    this.#lastSessionTimestamp = timestamp;
    // [tck-id-host-topic-phid-death-required] Will in CONNECT: STATE offline, QoS 1, retained,
    // with the timestamp the birth below repeats.
    const connect = await mqttConnect();
    const client = connect(
      this.#options.brokerUrl,
      // No Maximum Packet Size in CONNECT: the broker would drop a larger message unseen (MQTT 5
      // §3.1.2.11.4); the host reads it and refuses it by maxPayloadBytes, counted (fix19ab).
      sessionOptions(this.#options.mqtt ?? {}, {
        ...(this.#options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.#options.connectTimeoutMs }),
        will: {
          topic: this.#stateTopic,
          payload: Buffer.from(encodeHostState({ online: false, timestamp })),
          qos: 1,
          retain: true,
        },
      }),
    );
    const session: Session = { client, timestamp, online: false, closing: false };
    try {
      await raceAbort(
        new Promise<void>((resolve, reject) => {
          const onError = (error: Error & { code?: number }): void => {
            cleanup();
            const refused = error.code !== undefined && [4, 5, 0x86, 0x87].includes(error.code);
            reject(
              new KilnError(
                refused ? "KILN_AUTHENTICATION_FAILED" : "KILN_CONNECTION_FAILED",
                `MQTT connect to ${redactedBrokerUrl(this.#options.brokerUrl)} failed: ${withoutBrokerSecret(error.message, this.#options.brokerUrl)}`,
                { retryable: !refused, cause: error },
              ),
            );
          };
          const onClose = (): void => {
            cleanup();
            reject(
              new KilnError(
                "KILN_CONNECTION_FAILED",
                `MQTT connect to ${redactedBrokerUrl(this.#options.brokerUrl)} failed: connection closed`,
                {
                  retryable: true,
                },
              ),
            );
          };
          const onConnect = (): void => {
            cleanup();
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
        "Sparkplug host connect",
      );
      this.#session = session;
      this.#takeover.follow(client, this.#options.mqtt?.clientId);
      // Every edge node must be born again in this session before its data is taken: messages
      // were missed while the host was away.
      for (const node of this.#nodes.values()) {
        if (node.state === "online") this.#setNodeState(node, "awaiting-rebirth", "the host reconnected to the broker");
        // Deaths read on, or taken by, the sessions before: their other copies, and what they
        // were ahead of, went with those sessions (a clean session gets nothing of them).
        node.deathsAhead.length = 0;
        node.deathsTaken.length = 0;
      }
      while (this.#unknownDeaths.shift() !== undefined);
      // Rebirth requests of the sessions before: their answers went with them.
      this.#rebirthsOut.clear();
      this.#rebirthsWaiting.clear();
      // Messages are taken in order, a few ms of work per turn of the event loop (ADR 0030,
      // amendment 19i). Backpressure: MQTT.js reads the next packet only when its callback runs;
      // the inbox holds it past its bounds and while the writer is congested, and takes no
      // message while the writer is congested.
      const inbox = new HostInbox({
        take: (message) => this.#onMessage(session, message.topic, message.payload, message.retained),
        congested: () => this.#writer.congested,
        whenRelieved: () => this.#writer.whenRelieved(),
        onHold: () => {
          session.heldSince ??= this.#clock.now();
        },
        onRelease: () => this.#onHoldEnd(session),
      });
      session.inbox = inbox;
      client.on("message", (topic, payload, packet) => inbox.receive({ topic, payload, retained: packet.retain }));
      client.handleMessage = (_packet, callback) => inbox.ready(() => callback());
      client.on("error", (error: Error) => void (session.lastError = error.message));
      client.once("close", () => {
        session.mainClosedAt ??= this.#clock.now();
        this.#onSessionLost(session, client);
      });
      // Before the groups are followed, so every death the main session may see, the watch sees too.
      await raceAbort(this.#openWatch(session), signal, "Sparkplug host death watch");
      // [tck-id-host-topic-phid-birth-sub-required], [tck-id-message-flow-phid-sparkplug-subscription]:
      // own STATE and the groups, QoS 1, before the STATE birth.
      const filters: Record<string, GroupSubscription> = { [this.#stateTopic]: { qos: 1 } };
      for (const id of this.#groups) filters[`${SPARKPLUG_NAMESPACE}/${id}/#`] = this.#groupSubscription(1);
      const downgraded = await raceAbort(
        subscribeChecked(client, filters, "Sparkplug host session"),
        signal,
        "Sparkplug host subscribe",
      );
      if (downgraded.length > 0)
        this.#problems.set(
          "subscription-qos",
          `the broker granted a lower QoS than asked for ${downgraded.join(", ")}: a message it drops is seen only as a seq gap`,
        );
      else this.#problems.delete("subscription-qos");
      // [tck-id-host-topic-phid-birth-required], [tck-id-host-topic-phid-birth-qos], [-retain]: STATE online.
      await raceAbort(this.#publishOnline(session), signal, "Sparkplug host STATE");
      // A foreign STATE newer than this session's, seen by an earlier session (a broker restart or
      // a link blip before its stamp): outrun it from this session too, or the outrun promised in
      // health never comes (review adv19d MEDIUM-1; amendment fix19d of ADR 0043).
      if (this.#foreign.length > 0) this.#scheduleOutrun(session);
      this.#watchReplacements = 0;
      this.#problems.delete("watch-replaced-main");
    } catch (error) {
      session.closing = true;
      if (this.#session === session) this.#session = undefined;
      client.end(true);
      session.watch?.end(true);
      const replaced = this.#watchReplacedMain(session);
      if (replaced !== undefined)
        throw new KilnError("KILN_CONNECTION_FAILED", replaced, { retryable: true, cause: error });
      throw error;
    }
  }

  /**
   * Why the main session was lost, when the broker closed it as the host's own death watch
   * connected, {@link WATCH_REPLACED_AFTER} sessions in a row: the broker gave both one client id
   * although the host gives them two (adversarial review adv19r, M1: mosquitto
   * `use_username_as_clientid true` makes it the username, the same for both), and each CONNECT
   * ends the other's session, for ever. Undefined otherwise (the count starts again at each
   * session that opens). A broker that restarts closes the watch too; twice in a row at the
   * watch's connect is not a coincidence.
   */
  #watchReplacedMain(session: Session): string | undefined {
    const { mainClosedAt, watchConnectingAt } = session;
    if (
      mainClosedAt === undefined ||
      watchConnectingAt === undefined ||
      mainClosedAt < watchConnectingAt ||
      mainClosedAt - watchConnectingAt > WATCH_REPLACED_WITHIN_MS ||
      session.lastError === "Keepalive timeout"
    )
      return undefined;
    this.#watchReplacements++;
    if (this.#watchReplacements < WATCH_REPLACED_AFTER) return undefined;
    const user = this.#options.mqtt ?? {};
    const watchLogin = this.#options.deathWatchMqtt ?? {};
    const login = user.username === undefined ? "the same login" : `the same username "${user.username}"`;
    const text = `the host's death watch replaced its main session at the broker: the broker closed the main session ${mainClosedAt - watchConnectingAt} ms after the death watch began to connect, ${this.#watchReplacements} sessions in a row. The host gives the two sessions different client ids (${JSON.stringify(user.clientId ?? "made up by MQTT.js")} and ${JSON.stringify(watchLogin.clientId ?? (user.clientId === undefined ? "made up by MQTT.js" : `${user.clientId}-deaths`))}), so the broker likely derives client ids from the login (mosquitto use_username_as_clientid, with use_identity_as_username or use_subject_as_username for certificates) and both log in with ${login}: each connect ends the other's session. Give the death watch a login of its own (option deathWatchMqtt: { username, password }, a user allowed to read spBv1.0/<group>/NDEATH/+), or turn that broker setting off; retrying on the growing backoff`;
    this.#problems.set("watch-replaced-main", text);
    return text;
  }

  /**
   * Opens the session's death watch (see {@link Session.watch}): a clean MQTT session with the
   * user's MQTT options (its client id, if given, with `-deaths` added), no Will, subscribed at
   * QoS 0 to `spBv1.0/<group>/NDEATH/+` of every group. Each death is taken as it comes. QoS 0,
   * not 1: a QoS 1 subscription is bounded by the broker's in-flight window and queue for one
   * client, so a mass death (a switch fails) past them was dropped (adversarial review adv19p,
   * H2: 1,020 of 1,100 deaths with mosquitto's defaults; at QoS 0 all 1,100). On TCP a QoS 0
   * message is lost only with the connection, and if the watch closes, the whole session is lost
   * (reconnected): without it a death could again be dropped unseen.
   */
  async #openWatch(session: Session): Promise<void> {
    const connect = await mqttConnect();
    const own = this.#options.deathWatchMqtt ?? {};
    const user = {
      ...this.#options.mqtt,
      ...(own.username === undefined ? {} : { username: own.username }),
      ...(own.password === undefined ? {} : { password: own.password }),
    };
    const clientId = own.clientId ?? (user.clientId === undefined ? undefined : `${user.clientId}-deaths`);
    session.watchConnectingAt = this.#clock.now();
    const watch = connect(this.#options.brokerUrl, {
      ...sessionOptions(user, {
        ...(this.#options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.#options.connectTimeoutMs }),
        will: undefined,
      }),
      ...(clientId === undefined ? {} : { clientId }),
    });
    session.watch = watch;
    watch.on("error", () => undefined);
    await new Promise<void>((resolve, reject) => {
      const onConnect = (): void => {
        watch.off("close", onClose);
        resolve();
      };
      const onClose = (): void => {
        watch.off("connect", onConnect);
        reject(
          new KilnError(
            "KILN_CONNECTION_FAILED",
            `MQTT connect of the death watch to ${redactedBrokerUrl(this.#options.brokerUrl)} failed: connection closed`,
            { retryable: true },
          ),
        );
      };
      watch.once("connect", onConnect);
      watch.once("close", onClose);
    });
    this.#takeover.follow(watch, clientId);
    watch.on("message", (topic, payload, packet) => {
      if (topic === this.#stateTopic) {
        if (this.#session === session && !session.closing) this.#onOwnState(session, topic, payload, "watch");
      } else this.#onWatchedDeath(session, topic, payload, packet.retain);
    });
    watch.once("close", () => this.#onSessionLost(session, watch));
    const filters: Record<string, GroupSubscription> = {};
    for (const id of this.#groups) filters[`${SPARKPLUG_NAMESPACE}/${id}/NDEATH/+`] = this.#groupSubscription(0);
    await subscribeChecked(watch, filters, "Sparkplug host death watch");
    // Its own STATE on the watch too, which is never held: a STATE offline (an old session's Will,
    // retained) the broker drops from the main session's full queue, held or merely slow, would
    // otherwise leave the retained STATE offline while the host runs. Optional: a watch login
    // allowed to read only the NDEATH topics still works (the main session's copy, a hold's end and
    // a seq gap restate it then).
    try {
      await subscribeChecked(watch, { [this.#stateTopic]: { qos: 1 } }, "Sparkplug host death watch");
      this.#problems.delete("watch-state");
    } catch (error) {
      this.#problems.set(
        "watch-state",
        `the death watch may not read the host's own STATE topic ${this.#stateTopic} (${(error as Error).message}): a STATE offline the broker drops for the main session is restated only after a hold or a seq gap; allow the watch's login to read it`,
      );
    }
  }

  /**
   * The options of a group filter, the same on the main session and the death watch, so a
   * message arrives with the same retain flag on both and {@link leftOnBroker} refuses it on both
   * (ADR 0043, amendment fix19t). With MQTT 5, Retain As Published: a message someone publishes
   * retained while the host is subscribed keeps its retain flag, so it is refused like one handed
   * over at subscribe. The watch without it took such a death (retain 0) the main session refused,
   * and the edge node's next birth of its bdSeq was dead at once (adversarial review adv19r, H2).
   */
  #groupSubscription(qos: 0 | 1): GroupSubscription {
    return this.#options.mqtt?.protocolVersion === 5 ? { qos, rap: true } : { qos };
  }

  async #publishOnline(session: Session): Promise<void> {
    await session.client.publishAsync(
      this.#stateTopic,
      Buffer.from(encodeHostState({ online: true, timestamp: session.timestamp })),
      { qos: 1, retain: true },
    );
    session.online = true;
    this.#lastState = { online: true, timestamp: session.timestamp };
    // Said online with a newer timestamp: edge nodes follow this host again.
    this.#foreign = this.#foreign.filter((state) => state.timestamp >= session.timestamp);
  }

  /**
   * Keeps a foreign STATE in `#foreign` (oldest first; one with the same timestamp replaced),
   * whatever its distance: which of them an edge node follows depends on its clock and its
   * maxHostClockSkewMs, neither known here (amendment fix19i of ADR 0043, adv19h MEDIUM-1).
   */
  #keepForeign(state: ForeignState): void {
    const list = this.#foreign.filter((kept) => kept.timestamp !== state.timestamp);
    const at = list.findIndex((kept) => kept.timestamp > state.timestamp);
    list.splice(at === -1 ? list.length : at, 0, state);
    if (list.length > MAX_FOREIGN_STATES) {
      // Let go the older of the two closest (never the newest): its followers wait for the next.
      let drop = 0;
      for (let index = 1; index < list.length - 1; index++)
        if (list[index + 1]!.timestamp - list[index]!.timestamp < list[drop + 1]!.timestamp - list[drop]!.timestamp)
          drop = index;
      list.splice(drop, 1);
      this.#foreignMerged++;
    }
    this.#foreign = list;
  }

  /**
   * The foreign STATE to outrun next: of those kept within HOST_STATE_OUTRUN_INTERVAL_MS of the
   * oldest, the newest (adv19j LOW-1). One session stamped after it outruns them all, and the next
   * outrun could come no sooner than that interval anyway; an edge node follows the newest STATE
   * within its reach, so outrunning the oldest alone first left those edges silent one interval
   * longer (62 s for spoofs at +2 s and +4 s). Edges following an older one of the group wait at
   * most the interval, as they would for the pacing.
   */
  #outrunTarget(): ForeignState | undefined {
    const oldest = this.#foreign[0];
    if (oldest === undefined) return undefined;
    let target = oldest;
    for (const state of this.#foreign) {
      if (state.timestamp < oldest.timestamp + HOST_STATE_OUTRUN_INTERVAL_MS) target = state;
    }
    return target;
  }

  /**
   * Ends `session` (DISCONNECT, no Will) once the host's clock has passed the foreign STATE's
   * timestamp, whatever its distance, so the next session's STATE is newer than it and edge nodes
   * follow this host again (amendments fix19b and fix19c). Looked at again at least every
   * `HOST_STATE_OUTRUN_RECHECK_MS`: a STATE far ahead is waited for in steps, and a stepped clock
   * is noticed.
   */
  #scheduleOutrun(session: Session): void {
    const foreign = this.#outrunTarget();
    if (foreign === undefined || this.#stopping) return;
    const now = this.#clock.now();
    // At most one outrun per HOST_STATE_OUTRUN_INTERVAL_MS: each costs every live tag a stale mark
    // and every edge node a rebirth, so a spoofer repeating near-future STATEs gets no amplifier.
    // No distance is too far: an edge node holds a STATE more than its maxHostClockSkewMs ahead
    // back only until its clock comes within that, then follows it (review adv19c MEDIUM-1).
    const wait = Math.min(
      HOST_STATE_OUTRUN_RECHECK_MS,
      Math.max(
        foreign.timestamp - now + 1,
        this.#lastOutrunAt === undefined ? 0 : this.#lastOutrunAt + HOST_STATE_OUTRUN_INTERVAL_MS - now,
      ),
    );
    if (this.#outrunTimer !== undefined) this.#clock.clearTimeout(this.#outrunTimer);
    this.#outrunTimer = this.#clock.setTimeout(
      () => {
        this.#outrunTimer = undefined;
        const current = this.#outrunTarget();
        if (this.#stopping || this.#session !== session || session.closing || session.lost === true) return;
        if (current === undefined || current.timestamp < session.timestamp) return;
        if (
          current.timestamp >= this.#clock.now() ||
          (this.#lastOutrunAt !== undefined && this.#clock.now() < this.#lastOutrunAt + HOST_STATE_OUTRUN_INTERVAL_MS)
        ) {
          this.#scheduleOutrun(session);
          return;
        }
        this.#outruns++;
        this.#lastOutrunAt = this.#clock.now();
        session.outrun = `a new session to outrun a foreign STATE ${current.online ? "online" : "offline"} at ${iso(current.timestamp)} on this host's topic`;
        session.client.end(false);
      },
      Math.max(0, wait),
    );
  }

  /**
   * Says online again after a forged STATE offline (amendment fix19c): at once if the last such
   * answer is at least `FORGED_OFFLINE_ANSWER_INTERVAL_MS` old, else once it is (one timer for
   * all the forgeries meanwhile; the last STATE on the topic is then this host's online).
   */
  #answerForgedOffline(session: Session): void {
    if (this.#forgedAnswerTimer !== undefined) return;
    const now = this.#clock.now();
    const wait =
      this.#lastForgedAnswerAt === undefined ? 0 : this.#lastForgedAnswerAt + FORGED_OFFLINE_ANSWER_INTERVAL_MS - now;
    const answer = (): void => {
      this.#forgedAnswerTimer = undefined;
      if (this.#stopping || this.#session !== session || session.closing || session.lost === true) return;
      this.#lastForgedAnswerAt = this.#clock.now();
      void this.#publishOnline(session).catch(() => undefined);
    };
    if (wait <= 0) answer();
    else this.#forgedAnswerTimer = this.#clock.setTimeout(answer, wait);
  }

  #onSessionLost(session: Session, closed: MqttClient): void {
    if (session.closing || this.#session !== session || session.lost === true) return;
    session.lost = true;
    const takenOver = this.#takeover.lost(closed);
    if (takenOver !== undefined) session.takenOver = takenOver;
    const heldTooLong = closed === session.client ? this.#heldTooLong(session) : undefined;
    if (heldTooLong !== undefined) {
      session.heldTooLong = heldTooLong;
      this.#lastHeldTooLong = `${heldTooLong} (at ${new Date(this.#clock.now()).toISOString()})`;
    }
    // What MQTT.js handed over before the link went is taken first, as it was received, a slice
    // per turn of the event loop (review adv19k M1); then the session ends.
    void (session.inbox?.flush() ?? Promise.resolve()).then(() => this.#endLostSession(session));
  }

  #endLostSession(session: Session): void {
    // stop() may have ended it meanwhile (and marks the live values itself).
    if (session.closing || this.#session !== session) return;
    if (session.heldSince !== undefined) this.#heldBefore += Math.max(0, this.#clock.now() - session.heldSince);
    session.heldSince = undefined;
    this.#session = undefined;
    session.closing = true;
    session.client.end(true);
    session.watch?.end(true);
    this.#lastState = { online: false, timestamp: session.timestamp };
    // The host no longer sees the edge nodes: their live values are stale (Sparkplug 3.0.0, 5.x).
    // Stored too, right after the last value the host received: what the edge node measured
    // meanwhile, replayed later as history, lands after it (ADR 0043, amendment 19z).
    // In slices; the reconnect (whose births restate values after the marks) only once all are in.
    // A session another client took over (the same client id) proves nothing about the broker:
    // the backoff grows instead of redialling at its first step (adv19p M2).
    void this.#markAllStale("the host lost its broker connection").then(() => {
      if (this.#stopping) return;
      void this.#reconnect(
        session.takenOver ?? session.heldTooLong ?? session.outrun ?? "connection to the broker lost",
        session.takenOver !== undefined,
      );
    });
  }

  /**
   * {@link #markStale} for every live tag, at the time of the call, {@link MARK_SLICE_MS} of work
   * per turn of the event loop (`setImmediate` apart); resolves once every tag is marked. One
   * pass over 400,000 live tags held the loop for seconds at a link loss (review adv19k). Each
   * slice publishes its own `live-update`.
   */
  async #markAllStale(reason: string): Promise<void> {
    const tags = [...this.#live.keys()];
    const at = this.#clock.now();
    let index = 0;
    while (index < tags.length) {
      const start = performance.now();
      do {
        const end = Math.min(tags.length, index + MARK_STEP);
        this.#markStale(tags.slice(index, end), at, reason);
        index = end;
      } while (index < tags.length && performance.now() - start < MARK_SLICE_MS);
      if (index < tags.length) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Why the main session was lost, when MQTT.js's keepalive ended it while the host held it (its
   * store behind; adversarial review adv19k M2), else undefined. While held, MQTT.js reads
   * nothing, the broker's PINGRESP included (it waits behind the held messages), so a hold longer
   * than 1.5 × `mqtt.keepalive` ends the session as a dead broker would. Not prevented on purpose
   * (ADR 0043, amendment fix19q): the broker then publishes the host's Will (STATE offline), so
   * edge nodes following this host keep their data to forward instead of sending live data the
   * broker would drop from the full queue of a host that cannot take it.
   */
  #heldTooLong(session: Session): string | undefined {
    if (session.heldSince === undefined || session.lastError !== "Keepalive timeout") return undefined;
    const keepalive = this.#options.mqtt?.keepalive ?? 60;
    const heldMs = this.#clock.now() - session.heldSince;
    return `the broker connection was ended by the host's own keepalive (1.5 × mqtt.keepalive = ${keepalive * 1.5} s) after the host held it for ${(heldMs / 1_000).toFixed(1)} s because its store was behind (${this.#writer.held} samples held): held, MQTT.js reads nothing, the broker's PINGRESP included. The broker is not at fault; the broker publishes the host's STATE offline (edge nodes following it keep their data to forward). Make the store keep up, or set mqtt.keepalive above the longest store stall`;
  }

  #reconnect(reason: string, unprovenLoss = false): Promise<void> {
    return this.#lifecycle.reconnect({
      reason,
      backoff: this.#backoff,
      delayFirst: true,
      unprovenLoss,
      attempt: (signal) => this.#open(signal),
      onAttemptFailed: () => "retry",
    });
  }

  // ---- messages ------------------------------------------------------------------------------

  #reject(topic: string, message: string): void {
    this.#counts.malformed++;
    void this.#bus.publish("message-reject", { topic, message });
  }

  /**
   * A payload over `maxPayloadBytes`, checked before it is decoded: counted in
   * `messages.oversized`, rejected (`message-reject`), and its reason returned; else `undefined`.
   */
  #oversized(topic: string, bytes: Uint8Array): string | undefined {
    const limit = this.#options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    if (bytes.length <= limit) return undefined;
    this.#counts.oversized++;
    const detail = `${topic}: payload of ${bytes.length} bytes is over maxPayloadBytes (${limit}): not read`;
    this.#reject(topic, detail);
    return detail;
  }

  #onMessage(session: Session, topic: string, bytes: Uint8Array, retained = false): void {
    if (this.#session !== session || session.closing) return;
    if (topic === this.#stateTopic) {
      this.#onOwnState(session, topic, bytes, "main");
      return;
    }
    this.#counts.received++;
    let parsed: SparkplugTopic;
    try {
      parsed = parseSparkplugTopic(topic);
    } catch (error) {
      this.#reject(topic, (error as Error).message);
      return;
    }
    if (parsed.type === "STATE" || !this.#groups.has(parsed.groupId)) return;
    if (parsed.type === "NCMD" || parsed.type === "DCMD") return;
    // Sparkplug forbids retaining births, data and deaths (retain false: [tck-id-topics-nbirth-mqtt],
    // [tck-id-topics-ndata-mqtt], [tck-id-topics-dbirth-mqtt], [tck-id-topics-ddata-mqtt]...): a retained one is what a client left on
    // the broker some time ago (a ghost edge node born again at every host start). Refused before
    // anything: no edge node state, nothing stored.
    if (leftOnBroker(retained)) {
      this.#reject(
        topic,
        `${topic}: a retained ${parsed.type}: Sparkplug forbids retaining it (an old message left on the broker): refused, nothing taken`,
      );
      return;
    }
    // An id is kept in the host's maps and in every tag name: one longer than a kept name is
    // refused before anything is made for it (review 19h, H1: ids of 32,000 characters, as long as
    // a topic may be, took 65 KB per device past every cap).
    const deviceId = "deviceId" in parsed ? parsed.deviceId : undefined;
    const longId = [parsed.edgeNodeId, deviceId].find((id) => id !== undefined && id.length > NAME_KEPT_MAX);
    if (longId !== undefined) {
      this.#reject(
        `${topic.slice(0, NAME_KEPT_MAX)}…`,
        `a ${parsed.type} whose ${longId === parsed.edgeNodeId ? "edge node" : "device"} id has ${longId.length} characters, over ${NAME_KEPT_MAX}, the longest the host keeps: refused, not read`,
      );
      return;
    }
    const node = this.#node(parsed.groupId, parsed.edgeNodeId);
    if (node === undefined) {
      this.#refuseByLimit(
        "maxEdgeNodes",
        { groupId: parsed.groupId, edgeNodeId: parsed.edgeNodeId },
        topic,
        `${topic}: the host already follows ${this.#nodes.size} edge nodes (limits.maxEdgeNodes ${this.#limits.maxEdgeNodes}): a new edge node is refused, its messages not read`,
      );
      return;
    }
    // Before decoding: the size is known without reading it. The message is lost to the host, so
    // what follows from the node cannot be trusted either.
    const detail = this.#oversized(topic, bytes);
    if (detail !== undefined) {
      if (parsed.type === "NBIRTH" || parsed.type === "DBIRTH") node.birthsRefused++;
      if (parsed.type !== "NDEATH")
        this.#distrust(node, "payload-too-large", detail, parsed.type === "NBIRTH" || parsed.type === "DBIRTH");
      return;
    }
    switch (parsed.type) {
      case "NBIRTH":
        this.#onNodeBirth(node, topic, bytes);
        return;
      case "NDEATH":
        this.#onNodeDeath(node, topic, bytes);
        return;
      case "NDATA":
        this.#onData(node, undefined, topic, bytes);
        return;
      case "DBIRTH":
        this.#onDeviceBirth(node, parsed.deviceId, topic, bytes);
        return;
      case "DDATA":
        this.#onData(node, parsed.deviceId, topic, bytes);
        return;
      case "DDEATH":
        this.#onDeviceDeath(node, parsed.deviceId, topic, bytes);
        return;
    }
  }

  #onOwnState(session: Session, topic: string, bytes: Uint8Array, via: "main" | "watch"): void {
    // Size first, as for every other message (adv19y MEDIUM-2: a 200 MB STATE was parsed as JSON,
    // 2.7 GB and 16.6 s, counted nowhere), on both sessions: the death watch's copy of an oversize
    // STATE was read and taken as a foreign STATE (CI, stop 46). Counted once, on the main session's
    // copy; the watch's copy of the same message is dropped unread. The host's own STATE is a few
    // dozen bytes. A malformed STATE likewise (counted twice before).
    if (bytes.length > (this.#options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES)) {
      if (via === "main") this.#oversized(topic, bytes);
      return;
    }
    let state: { online: boolean; timestamp: number };
    try {
      state = decodeHostState(bytes);
    } catch (error) {
      // Rejected and counted once, on the main session's copy, as an oversize one is.
      if (via === "main") this.#reject(topic, (error as Error).message);
      return;
    }
    // A STATE newer than this session's is not this host's (its births and Will carry the
    // session's timestamp): a second host with this id, or a spoof. Edge nodes follow the newest
    // timestamp, so what the host says next does not outrun it: reported (adv19x M2), and outrun
    // by a new session once the host's clock has passed it, whatever the distance (amendments
    // fix19b and fix19c, adv19z MEDIUM-2, adv19c MEDIUM-1).
    if (state.timestamp > session.timestamp) {
      this.#keepForeign({ online: state.online, timestamp: state.timestamp, seenAt: this.#clock.now() });
      this.#scheduleOutrun(session);
    }
    // While the main session is connected its Will cannot have been published, and stop() says
    // offline only once stopping: an offline with exactly its timestamp is forged (adv19z LOW-1).
    if (
      !state.online &&
      state.timestamp === session.timestamp &&
      via === "main" &&
      session.online &&
      !this.#stopping &&
      session.lost !== true &&
      session.client.connected
    ) {
      const now = this.#clock.now();
      this.#forgedOffline = { count: (this.#forgedOffline?.count ?? 0) + 1, lastSeenAt: now };
      this.#reject(
        topic,
        `STATE offline with this session's own timestamp (${state.timestamp}) while the session is connected: not its Will, forged`,
      );
    }
    // [tck-id-message-flow-hid-sparkplug-state-message-delivered]: seeing itself offline while
    // connected, the host says it is online again (same timestamp as its Will, so the Will still
    // counts when this session ends).
    // A forged one is answered at most once per FORGED_OFFLINE_ANSWER_INTERVAL_MS (each answer is
    // a rebirth of every edge node that died on it): a flood gets no amplifier (adv19c LOW-1).
    if (!state.online && session.online) {
      // With the session's own timestamp (each forgery comes on the death watch too): paced.
      if (state.timestamp === session.timestamp) this.#answerForgedOffline(session);
      else void this.#publishOnline(session).catch(() => undefined);
    }
    if (!state.online && state.timestamp === session.timestamp && this.#stopping) {
      session.farewellEchoed = true;
      session.onFarewellProgress?.();
    }
  }

  /** The edge node's state, made on its first message; undefined past `limits.maxEdgeNodes`. */
  #node(groupId: string, edgeNodeId: string): EdgeNodeState | undefined {
    const key = `${groupId}/${edgeNodeId}`;
    let node = this.#nodes.get(key);
    if (node === undefined) {
      if (this.#nodes.size >= this.#limits.maxEdgeNodes && !this.#forgetEdgeNode()) return undefined;
      node = {
        groupId,
        edgeNodeId,
        state: "unknown",
        bdSeq: undefined,
        lastSeq: undefined,
        birth: undefined,
        devices: new Map(),
        downDevices: new OldestFirstIndex(),
        aliases: new Map(),
        lastRebirthAt: undefined,
        offlineSince: undefined,
        births: 0,
        rebirthsRequested: 0,
        rebirthsSuppressed: 0,
        rebirthsPaced: 0,
        unansweredRebirths: 0,
        held: [],
        heldSamples: 0,
        heldReleased: 0,
        seqGaps: 0,
        dataBeforeBirth: 0,
        unknownAliases: 0,
        staleDeaths: 0,
        ack: undefined,
        acksSent: 0,
        birthsRefused: 0,
        retypedMetrics: 0,
        trustLost: [],
        lastBirthRefusal: undefined,
        awaiting: undefined,
        deathsAhead: [],
        deathsTaken: [],
        lastDeathAt: undefined,
        verify: undefined,
      };
      this.#nodes.set(key, node);
      this.#indexNode(node);
    }
    return node;
  }

  /**
   * The one place where the host's trust in an edge node's or device's stream changes. Every
   * transition away from `online` (NDEATH, DDEATH, a seq gap or other distrust, a new NBIRTH for
   * the devices it ends, the host's own reconnect) marks the live values of what it covers stale
   * (uncertain, with `reason`, at `at`; stored right after the last value received, ADR 0043
   * amendment 19z), so the live view never shows a value good from a stream the host no longer
   * takes (issue 19).
   */
  #setNodeState(
    node: EdgeNodeState,
    state: EdgeNodeState["state"],
    reason: string,
    { deviceId, at, birthRefused = false }: { deviceId?: string; at?: number; birthRefused?: boolean } = {},
  ): void {
    const now = this.#clock.now();
    if (deviceId === undefined) {
      if (node.state === state) return;
      if (state === "offline" && node.verify !== undefined) {
        node.verify = undefined;
        this.#verifying.delete(node);
      }
      if (state === "offline") this.#settleHeld(node, `${reason}: offline before an NBIRTH verified it`);
      if (node.state === "online" && state === "awaiting-rebirth") {
        // Trimmed here, not only in health(): bounded however long health() is not called.
        while (
          node.trustLost.length > 0 &&
          (node.trustLost[0]!.at < now - FLAP_WINDOW_MS || node.trustLost.length >= FLAP_KEPT)
        )
          node.trustLost.shift();
        node.trustLost.push({ at: now, birthRefused });
      }
      node.state = state;
      node.awaiting = state === "awaiting-rebirth" ? { since: now, reason } : undefined;
      // A stream the host no longer takes has no seq to judge what follows by: the next message
      // it takes is an NBIRTH's. Kept, it would judge a later session's data by this one's seq,
      // and data on the history-only path (a death read ahead on the watch, #historyOnly) could
      // pass as this session's (ADR 0043, amendment fix19x). A death read ahead keeps it: the
      // session's data still queued on the main session is judged by it.
      if (state === "awaiting-rebirth") node.lastSeq = undefined;
      this.#indexNode(node);
      // Its numbering holds for one birth only (ADR 0037).
      if (state !== "online") this.#endAcks(node);
    }
    if (state !== "online") {
      const what =
        deviceId === undefined
          ? `edge node ${node.groupId}/${node.edgeNodeId}`
          : `device ${deviceId} of ${node.groupId}/${node.edgeNodeId}`;
      this.#markStale(this.#tagsOf(node, deviceId), at ?? now, `${what} ${state}: ${reason}`);
    }
    this.#session?.onFarewellProgress?.();
    void this.#bus.publish("edge-node-change", {
      groupId: node.groupId,
      edgeNodeId: node.edgeNodeId,
      ...(deviceId === undefined ? {} : { deviceId }),
      state,
      ...(node.bdSeq === undefined ? {} : { bdSeq: node.bdSeq }),
      reason,
    });
  }

  #decode(topic: string, bytes: Uint8Array, birth?: Birth): SparkplugPayload | undefined {
    try {
      return decodePayload(
        bytes,
        birth === undefined
          ? {}
          : {
              datatypeOf: ({ name, alias }) =>
                (alias !== undefined
                  ? birth.byAlias.get(alias)
                  : name !== undefined
                    ? birth.byName.get(name)
                    : undefined
                )?.datatype,
            },
      );
    } catch (error) {
      this.#reject(topic, (error as Error).message);
      return undefined;
    }
  }

  /**
   * A seq gap says messages the broker had for the host were dropped (a full queue for a slow
   * reader drops them whether or not the host held its connection): its own STATE offline (an old
   * session's Will, retained) may have been among them, and the retained STATE would then say
   * offline while it runs. It says online again (same timestamp: idempotent for edge nodes), at
   * most once a second (as after a hold, adv19k H2).
   */
  #restateOnline(): void {
    const session = this.#session;
    if (session === undefined || !session.online || session.closing || this.#stopping) return;
    const now = this.#clock.now();
    if (session.restatedAt !== undefined && now - session.restatedAt < 1_000) return;
    session.restatedAt = now;
    void this.#publishOnline(session).catch(() => undefined);
  }

  /** Checks `seq` against the last one (0–255, wrapping); on a gap, distrusts the node. */
  #checkSeq(node: EdgeNodeState, payload: SparkplugPayload, topic: string): boolean {
    const seq = payload.seq;
    const expected = node.lastSeq === undefined ? undefined : (node.lastSeq + 1) % 256;
    if (seq === undefined || expected === undefined || seq !== expected) {
      node.seqGaps++;
      if (seq !== undefined && expected !== undefined) this.#restateOnline();
      this.#distrust(
        node,
        "seq-gap",
        `${topic}: seq ${seq === undefined ? "missing" : seq}, expected ${expected === undefined ? "none" : expected}`,
      );
      return false;
    }
    node.lastSeq = seq;
    return true;
  }

  /**
   * Stops taking the node's data until its next NBIRTH, and asks for one. `birthRefused`: the
   * cause is a birth refused for a reason of its own (not a sign of a duplicate edge node id).
   */
  #distrust(node: EdgeNodeState, reason: SparkplugRebirthReason, detail: string, birthRefused = false): void {
    if (birthRefused) node.lastBirthRefusal = { at: this.#clock.now(), detail };
    if (node.state === "online") this.#setNodeState(node, "awaiting-rebirth", detail, { birthRefused });
    this.#requestRebirth(node, reason, detail);
  }

  /**
   * Asks the edge node for a rebirth; true when an NCMD went out (not held back by
   * `rebirthIntervalMs`, nor waiting its turn). The one place that decides whether a request goes
   * out: every rebirth request of the host comes here. Paced (ADR 0043, amendment fix19x): a
   * request to an edge node with none out waits its turn while `maxOutstandingRebirths` are out,
   * or while the births asked for would congest the writer, or while others wait before it.
   */
  #requestRebirth(node: EdgeNodeState, reason: SparkplugRebirthReason, detail: string): boolean {
    const session = this.#session;
    const now = this.#clock.now();
    // Expired turns first, this node's own included: a node whose request is out was otherwise
    // asked again every rebirthIntervalMs with its turn never released, so its unansweredRebirths
    // (and the backoff on it) never grew (adversarial review adv19y, LOW-3: 46 requests in 10 s).
    if (session !== undefined && !this.#stopping) this.#releaseRebirths();
    const interval = this.#rebirthInterval(node);
    const key = `${node.groupId}/${node.edgeNodeId}`;
    // The last request is also kept apart from the edge node's state, so messages on an edge node
    // id that was forgotten (its state made again by each) do not send a request each.
    const last = node.lastRebirthAt ?? this.#rebirthSentAt.get(key);
    const suppressed = session === undefined || this.#stopping || (last !== undefined && now - last < interval);
    if (!suppressed && !this.#rebirthsOut.has(node)) {
      const waiting = this.#rebirthsWaiting.get(node);
      if (waiting !== undefined || this.#rebirthsWaiting.size > 0 || !this.#rebirthTurn(node)) {
        if (waiting !== undefined) {
          waiting.reason = reason;
          waiting.detail = detail;
          return false;
        }
        this.#rebirthsWaiting.set(node, { reason, detail, since: now });
        node.rebirthsPaced++;
        void this.#bus.publish("rebirth-request", {
          groupId: node.groupId,
          edgeNodeId: node.edgeNodeId,
          reason,
          detail: `${detail} (waiting its turn: ${this.#rebirthsOut.size} rebirth requests out, maxOutstandingRebirths ${this.#maxOutstandingRebirths}; ${this.#writer.held} samples held by the writer)`,
          suppressed: true,
        });
        this.#scheduleVerify();
        return false;
      }
    }
    return this.#sendRebirth(node, reason, detail, suppressed);
  }

  /**
   * `rebirthIntervalMs` for this edge node: doubled for each request in a row whose turn ended
   * unanswered, at most {@link REBIRTH_BACKOFF_MAX} times (amendment fix19y).
   */
  #rebirthInterval(node: EdgeNodeState): number {
    const base = this.#options.rebirthIntervalMs ?? 5_000;
    // At most rebirthTimeoutMs (or the base when larger): an edge node whose data keeps coming is
    // alive, and a request it missed must not leave its data discarded for minutes (review
    // finding M1, amendment fix19ab). Those that never answer still wait behind those that do.
    const cap = Math.max(base, this.#options.rebirthTimeoutMs ?? 10_000);
    return Math.min(base * Math.min(2 ** node.unansweredRebirths, REBIRTH_BACKOFF_MAX), cap);
  }

  get #maxOutstandingRebirths(): number {
    return this.#options.maxOutstandingRebirths ?? 16;
  }

  /** Samples the edge node's answer to a rebirth request is expected to bring: its current births. */
  #birthSamples(node: EdgeNodeState): number {
    // Its answer releases what it holds too (amendment fix19z).
    let size = birthSize(node.birth) + node.heldSamples;
    for (const device of node.devices.values()) if (device.online) size += birthSize(device.birth);
    return size;
  }

  /**
   * Whether a request to `node` may go out now (see `maxOutstandingRebirths`): fewer than the bound
   * are out, and the births asked for and not yet taken, with this one's, fit in the writer before
   * it congests. With none out, one always may (so a birth larger than that room still goes).
   */
  #rebirthTurn(node: EdgeNodeState): boolean {
    if (this.#rebirthsOut.size === 0) return true;
    if (this.#rebirthsOut.size >= this.#maxOutstandingRebirths) return false;
    let expected = this.#birthSamples(node);
    for (const out of this.#rebirthsOut.values()) if (out.storedThrough === undefined) expected += out.size;
    return expected <= this.#writer.room;
  }

  /**
   * Frees the slots of requests whose answer is settled in the store, or that had
   * `rebirthTimeoutMs` of the host reading without one (with no answer begun, that edge node's
   * `unansweredRebirths` grows: amendment fix19y), or whose edge node was forgotten.
   */
  #releaseRebirths(): void {
    if (this.#rebirthsOut.size === 0) return;
    const timeout = this.#options.rebirthTimeoutMs ?? 10_000;
    for (const [node, out] of this.#rebirthsOut) {
      const stored = out.storedThrough !== undefined && this.#settledThrough >= out.storedThrough;
      const unanswered = !stored && out.storedThrough === undefined && this.#readingSince(out.sent) >= timeout;
      if (
        stored ||
        this.#readingSince(out.sent) >= timeout ||
        this.#nodes.get(`${node.groupId}/${node.edgeNodeId}`) !== node
      ) {
        this.#rebirthsOut.delete(node);
        // Held a turn for nothing: asked less often, and after those that answer (adv19 MEDIUM-1).
        if (unanswered && node.unansweredRebirths < 30) node.unansweredRebirths++;
      }
    }
  }

  /**
   * The edge node's current NDEATH was taken: a rebirth request still waiting its turn is dropped,
   * and one out whose answer has not begun frees its turn, so the dead do not hold back the living
   * (adversarial review adv19, MEDIUM-2; ADR 0043, amendment fix19y). Except the deliberate re-ask
   * of an offline edge node after a hold (`#reask`): it may have been born again in a message the
   * broker dropped.
   */
  #endRebirthTurn(node: EdgeNodeState): void {
    if (this.#reask.has(node)) return;
    this.#rebirthsWaiting.delete(node);
    const out = this.#rebirthsOut.get(node);
    if (out !== undefined && out.storedThrough === undefined) {
      this.#rebirthsOut.delete(node);
      this.#pumpRebirths();
    }
  }

  /**
   * Sends the requests waiting their turn while turns are free, oldest first. A request whose need
   * has gone (the edge node was born again meanwhile, or forgotten) is dropped, not sent.
   */
  #pumpRebirths(): void {
    this.#releaseRebirths();
    if (this.#rebirthsWaiting.size === 0 || this.#session === undefined || this.#stopping) return;
    // Oldest first, but edge nodes born before (known, lost trust) before never-born ids, which
    // anyone may invent by publishing data on them (review finding M3, amendment fix19ab), and
    // within each edge nodes that answered their last request before those that did not (adv19
    // MEDIUM-1): neither a flood of invented ids nor nodes that never answer starve a real one.
    const order = [...this.#rebirthsWaiting].sort(([a], [b]) => rebirthRank(a) - rebirthRank(b));
    for (const [node, wanted] of order) {
      const forgotten = this.#nodes.get(`${node.groupId}/${node.edgeNodeId}`) !== node;
      const answered =
        wanted.reason !== "samples-dropped" &&
        node.state === "online" &&
        node.verify === undefined &&
        !this.#reask.has(node);
      if (forgotten || answered || this.#rebirthsOut.has(node)) {
        this.#rebirthsWaiting.delete(node);
        continue;
      }
      if (!this.#rebirthTurn(node)) return;
      this.#rebirthsWaiting.delete(node);
      this.#sendRebirth(node, wanted.reason, wanted.detail, false);
    }
  }

  /** Sends an NCMD rebirth request now (or counts it held back when `suppressed`); see {@link #requestRebirth}. */
  #sendRebirth(node: EdgeNodeState, reason: SparkplugRebirthReason, detail: string, suppressed: boolean): boolean {
    const session = this.#session;
    const now = this.#clock.now();
    const interval = this.#options.rebirthIntervalMs ?? 5_000;
    const key = `${node.groupId}/${node.edgeNodeId}`;
    const held = suppressed || session === undefined;
    if (held) {
      node.rebirthsSuppressed++;
      const reported = node.suppressedReportedAt;
      if (reported !== undefined && now - reported < Math.max(interval, SUPPRESSED_REPORT_MS)) return false;
      node.suppressedReportedAt = now;
    } else {
      node.lastRebirthAt = now;
      this.#rebirthSentAt.add(key, now);
      // Oldest first: drop what no longer suppresses anything, and never keep more than
      // maxEdgeNodes + 10,000 (ids forgotten or refused: at most one request each per interval).
      for (let old = this.#rebirthSentAt.oldest(); old !== undefined; old = this.#rebirthSentAt.oldest()) {
        if (now - old.value < interval && this.#rebirthSentAt.size <= this.#limits.maxEdgeNodes + REBIRTH_IDS_EXTRA)
          break;
        this.#rebirthSentAt.delete(old.key);
      }
      node.rebirthsRequested++;
      this.#rebirthsWaiting.delete(node);
      if (!this.#rebirthsOut.has(node))
        this.#rebirthsOut.set(node, {
          sent: this.#readingClock(),
          size: this.#birthSamples(node),
          storedThrough: undefined,
        });
      // A request that waited its turn: the rebirth timeout of an unverified edge node starts now.
      if (node.verify !== undefined && node.verify.requested === undefined)
        node.verify.requested = this.#readingClock();
      // [tck-id-operational-behavior-host-reordering-rebirth]; NCMD QoS 0, not retained
      // ([tck-id-topics-ncmd-mqtt]), with a timestamp ([tck-id-topics-ncmd-timestamp]).
      const bytes = encodePayload(
        { timestamp: now, metrics: [{ name: REBIRTH, timestamp: now, datatype: "Boolean", value: true }] },
        { omitDatatype: true },
      );
      session.client.publish(
        sparkplugTopic({ type: "NCMD", groupId: node.groupId, edgeNodeId: node.edgeNodeId }),
        Buffer.from(bytes),
        { qos: 0, retain: false },
      );
    }
    void this.#bus.publish("rebirth-request", {
      groupId: node.groupId,
      edgeNodeId: node.edgeNodeId,
      reason,
      detail,
      suppressed: held,
    });
    return !held;
  }

  #discard(payload: SparkplugPayload): void {
    this.#counts.samples += payload.metrics.length;
    this.#counts.discarded += payload.metrics.length;
  }

  /**
   * Counts a refusal by a cap, names it in `health().problems` (the last one per cap) and reports
   * it (`limit-refusal`). The caller refuses the message itself.
   */
  #refuseByLimit(
    limit: SparkplugHostLimit,
    where: { readonly groupId: string; readonly edgeNodeId: string; readonly deviceId?: string },
    topic: string,
    detail: string,
  ): void {
    this.#refusals[limit]++;
    this.#problems.set(
      `limit:${limit}`,
      `limits.${limit} (${this.#limits[limit]}) reached: ${this.#refusals[limit]} ${limit === "maxEdgeNodes" ? "messages" : "births"} refused, nothing of them stored; the last at ${new Date(this.#clock.now()).toISOString()}: ${detail} (raise the limit if the fleet is this large; otherwise a client on the broker invents them: check its ACLs)`,
    );
    void this.#bus.publish("limit-refusal", { limit, max: this.#limits[limit], ...where, topic, detail });
  }

  /**
   * A cap a birth would break, refused whole (counted, named, distrusted as any refused birth),
   * or false. `replaced`: the metrics of the births it ends (an NBIRTH ends its devices' too).
   */
  #birthOverLimit(
    node: EdgeNodeState,
    deviceId: string | undefined,
    topic: string,
    payload: SparkplugPayload,
    replaced: number,
  ): boolean {
    const where = {
      groupId: node.groupId,
      edgeNodeId: node.edgeNodeId,
      ...(deviceId === undefined ? {} : { deviceId }),
    };
    let limit: SparkplugHostLimit | undefined;
    let detail = "";
    // A birth counts at least 1 (see birthSize).
    const count = Math.max(1, payload.metrics.length);
    // Room is made by forgetting what is dead, least recently seen first, never what is born.
    if (deviceId !== undefined && !node.devices.has(deviceId))
      while (node.devices.size >= this.#limits.maxDevicesPerEdgeNode && this.#forgetDeadDevice(node)) {
        // Each pass forgets one offline device of this edge node.
      }
    if (count <= this.#limits.maxMetricsPerBirth)
      while (this.#heldMetrics - replaced + count > this.#limits.maxMetrics && this.#forgetDead(node, deviceId)) {
        // Each pass forgets the device or edge node seen least recently.
      }
    if (
      deviceId !== undefined &&
      !node.devices.has(deviceId) &&
      node.devices.size >= this.#limits.maxDevicesPerEdgeNode
    ) {
      limit = "maxDevicesPerEdgeNode";
      detail = `${topic}: edge node ${node.groupId}/${node.edgeNodeId} already has ${node.devices.size} devices (limits.maxDevicesPerEdgeNode ${this.#limits.maxDevicesPerEdgeNode}): a new device is refused`;
    } else if (count > this.#limits.maxMetricsPerBirth) {
      limit = "maxMetricsPerBirth";
      detail = `${topic}: a birth of ${count} metrics is over limits.maxMetricsPerBirth (${this.#limits.maxMetricsPerBirth})`;
    } else if (this.#heldMetrics - replaced + count > this.#limits.maxMetrics) {
      limit = "maxMetrics";
      detail = `${topic}: its ${count} metrics would take the host to ${this.#heldMetrics - replaced + count} metrics, over limits.maxMetrics (${this.#limits.maxMetrics})`;
    }
    if (limit === undefined) return false;
    this.#refuseByLimit(limit, where, topic, detail);
    this.#refuseBirth(node, topic, detail, payload);
    return true;
  }

  /**
   * Refuses a birth whole (issue 19): counted (`birthsRefused`, `messages.malformed`), reported
   * (`message-reject`), the edge node distrusted (its live values stale, a rebirth requested).
   * Nothing of it is stored. `payload` is undefined when it could not be decoded (already reported).
   */
  #refuseBirth(node: EdgeNodeState, topic: string, detail: string, payload?: SparkplugPayload): void {
    node.birthsRefused++;
    if (payload !== undefined) {
      this.#reject(topic, detail);
      this.#discard(payload);
    }
    this.#distrust(node, "birth-refused", `${topic}: birth refused: ${detail}`, true);
  }

  /**
   * What makes a birth unusable, or undefined: a metric name or an alias given twice in it, or an
   * alias the NBIRTH or another online device of the session already gave (Sparkplug 3.0.0: names
   * and aliases are unique per edge node). Names that are not UTF-8 never decode. O(its metrics):
   * the aliases others hold are looked up in the edge node's index (ADR 0030, amendment fix19g-index).
   */
  #birthProblem(node: EdgeNodeState, deviceId: string | undefined, payload: SparkplugPayload): string | undefined {
    const names = new Set<string>();
    const aliases = new Map<number | bigint, string>();
    const heldByOther = (alias: number | bigint): string | undefined => {
      // An NBIRTH ends every device's birth and its own: only its own aliases count.
      if (deviceId === undefined) return undefined;
      const holder = node.aliases.get(alias);
      if (holder === undefined || holder.deviceId === deviceId) return undefined;
      return `${JSON.stringify(holder.info.name)} of ${holder.deviceId === undefined ? "the NBIRTH" : `device ${holder.deviceId}`}`;
    };
    for (const metric of payload.metrics) {
      const long = metric.name === undefined ? undefined : this.#nameTooLong(node, deviceId, metric.name);
      if (long !== undefined) return long;
    }
    for (const metric of payload.metrics) {
      const name = metric.name === undefined ? "(no name)" : JSON.stringify(metric.name);
      if (metric.name !== undefined) {
        if (names.has(metric.name)) return `metric name ${name} given twice`;
        names.add(metric.name);
      }
      if (metric.alias !== undefined) {
        const holder = aliases.get(metric.alias) ?? heldByOther(metric.alias);
        if (holder !== undefined) return `alias ${String(metric.alias)} of ${name} already given to ${holder}`;
        aliases.set(metric.alias, name);
      }
    }
    return undefined;
  }

  /**
   * Why a birth cannot be taken for the length of a metric name, or undefined: a name over
   * {@link NAME_KEPT_MAX} characters. A birth keeps each name in its maps, so such a birth is
   * refused whole and nothing of the name is kept (98 births of one 2 MB name took the heap from 32
   * to 230 MB, outside every cap; ADR 0030, amendment fix19e). Counted and named in
   * `health().problems` (the name cut to its first 40 characters). A shorter name whose tag name
   * is over 256 characters is kept as before: its values are counted `unstorable`, the rest of the
   * birth is taken.
   */
  #nameTooLong(node: EdgeNodeState, deviceId: string | undefined, name: string): string | undefined {
    if (name.length <= NAME_KEPT_MAX) return undefined;
    this.#namesTooLong++;
    const shown =
      name.length > 40 ? `${JSON.stringify(name.slice(0, 40))}… (${name.length} characters)` : JSON.stringify(name);
    const detail = `metric name ${shown}${deviceId === undefined ? "" : ` of device ${deviceId}`} is over ${NAME_KEPT_MAX} characters, the longest the host keeps (tag names have at most ${TAG_NAME_MAX})`;
    this.#problems.set(
      "names-too-long",
      `${this.#namesTooLong} births refused for a metric name too long to keep (over ${NAME_KEPT_MAX} characters); the last from ${node.groupId}/${node.edgeNodeId}: ${detail}`,
    );
    return detail;
  }

  /**
   * Marks stale the live values of metrics `before` announced and `after` does not (their stale
   * mark stored), then releases what the host held for them: no current birth declares them, so
   * what it keeps per metric stays within `limits.maxMetrics` however often an edge node renames
   * its metrics (ADR 0030, amendment of 2026-12-02 "release").
   */
  #markAbsent(before: Birth | undefined, after: Birth, what: string): void {
    if (before === undefined) return;
    const gone: string[] = [];
    for (const info of before.byName.values())
      if (info.tag !== undefined && !after.byName.has(info.name)) gone.push(info.tag);
    this.#markStale(gone, this.#clock.now(), `absent from the ${what}`);
    this.#release(gone);
  }

  /** Files an edge node in the index of what may be forgotten that its state calls for (none if online). */
  #indexNode(node: EdgeNodeState): void {
    this.#unbornNodes.delete(node);
    this.#downNodes.delete(node);
    if (node.state === "online") return;
    if (node.births === 0) this.#unbornNodes.add(node, true);
    else this.#downNodes.add(node, this.#clock.now());
  }

  /**
   * Takes a device offline (its aliases free again in the edge node's session) and files it last
   * in the indexes of what may be forgotten.
   */
  #deviceDown(node: EdgeNodeState, id: string, device: DeviceState): void {
    if (device.online) this.#unindexAliases(node, id, device.birth);
    device.online = false;
    this.#downDevices.add(device, { node, id, at: this.#clock.now() });
    node.downDevices.add(id, device);
  }

  /** Files the aliases of `birth` (the NBIRTH's if `deviceId` is undefined) as held in the edge node's session. */
  #indexAliases(node: EdgeNodeState, deviceId: string | undefined, birth: Birth | undefined): void {
    for (const [alias, info] of birth?.byAlias ?? []) node.aliases.set(alias, { deviceId, info });
  }

  /** Frees the aliases `birth` holds in the edge node's session (only those it holds). */
  #unindexAliases(node: EdgeNodeState, deviceId: string | undefined, birth: Birth | undefined): void {
    for (const [alias, info] of birth?.byAlias ?? []) {
      const holder = node.aliases.get(alias);
      if (holder !== undefined && holder.deviceId === deviceId && holder.info === info) node.aliases.delete(alias);
    }
  }

  /** Takes a device out of the indexes of what may be forgotten (it is born again, or forgotten). */
  #unindexDevice(node: EdgeNodeState, id: string): void {
    const device = node.devices.get(id);
    if (device !== undefined) this.#downDevices.delete(device);
    node.downDevices.delete(id);
  }

  /** Forgets the offline device of `node` seen least recently. False if it has none. */
  #forgetDeadDevice(node: EdgeNodeState): boolean {
    const oldest = node.downDevices.oldest();
    if (oldest === undefined) return false;
    this.#forgetDevice(node, oldest.key);
    return true;
  }

  /**
   * Forgets what is dead and seen least recently, an offline device or a born edge node not online
   * (with its devices and metrics), never `keepNode` itself nor its device `keep`: what makes room
   * under `limits.maxMetrics`. O(1) to choose. False if nothing is dead.
   */
  #forgetDead(keepNode: EdgeNodeState, keep: string | undefined): boolean {
    let device: { readonly node: EdgeNodeState; readonly id: string; readonly at: number } | undefined;
    // Each loop passes over one entry at most (the device or edge node being born).
    for (const { value } of this.#downDevices.entries())
      if (value.node !== keepNode || value.id !== keep) {
        device = value;
        break;
      }
    let node: { readonly key: EdgeNodeState; readonly value: number } | undefined;
    for (const entry of this.#downNodes.entries())
      if (entry.key !== keepNode) {
        node = entry;
        break;
      }
    if (node !== undefined && (device === undefined || node.value <= device.at)) {
      this.#forgetNode(node.key);
      return true;
    }
    if (device === undefined) return false;
    this.#forgetDevice(device.node, device.id);
    return true;
  }

  /**
   * Forgets device `id` of `node` (offline): its metrics released, its room under
   * `limits.maxMetrics` and `maxDevicesPerEdgeNode` given back. A device forgotten and born again
   * later is a new device to the host.
   */
  #forgetDevice(node: EdgeNodeState, id: string): void {
    const device = node.devices.get(id);
    if (device === undefined) return;
    const birth = device.birth ?? device.retired;
    this.#heldMetrics -= birthSize(birth);
    this.#release(this.#tagsOfBirth(birth));
    this.#unindexDevice(node, id);
    node.devices.delete(id);
    this.#forgotten.devices++;
    this.#problems.set(
      "limit:forgotten",
      `limits: ${this.#forgotten.devices} offline devices and ${this.#forgotten.edgeNodes} edge nodes not online forgotten to make room for new ones; the last: device ${id} of ${node.groupId}/${node.edgeNodeId}`,
    );
  }

  /**
   * Forgets the edge node not online seen least recently (one never born first), with its devices
   * and metrics, to make room for a new one under `limits.maxEdgeNodes`. False if every one is online.
   */
  #forgetEdgeNode(): boolean {
    const node = this.#unbornNodes.oldest() ?? this.#downNodes.oldest();
    if (node === undefined) return false;
    this.#forgetNode(node.key);
    return true;
  }

  /** Forgets an edge node not online with its devices and metrics (O(what it holds)). */
  #forgetNode(node: EdgeNodeState): void {
    this.#settleHeld(node, "its edge node was forgotten before an NBIRTH verified it");
    this.#endAcks(node);
    this.#verifying.delete(node);
    this.#reask.delete(node);
    this.#heldMetrics -= birthSize(node.birth);
    this.#release(this.#tagsOfBirth(node.birth));
    for (const [id, device] of node.devices) {
      const birth = device.birth ?? device.retired;
      this.#heldMetrics -= birthSize(birth);
      this.#release(this.#tagsOfBirth(birth));
      this.#unindexDevice(node, id);
    }
    this.#unbornNodes.delete(node);
    this.#downNodes.delete(node);
    this.#nodes.delete(`${node.groupId}/${node.edgeNodeId}`);
    this.#forgotten.edgeNodes++;
    this.#problems.set(
      "limit:forgotten",
      `limits: ${this.#forgotten.devices} offline devices and ${this.#forgotten.edgeNodes} edge nodes not online forgotten to make room for new ones; the last: edge node ${node.groupId}/${node.edgeNodeId}`,
    );
  }

  #tagsOfBirth(birth: Birth | undefined): string[] {
    const tags: string[] = [];
    for (const info of birth?.byName.values() ?? []) if (info.tag !== undefined) tags.push(info.tag);
    return tags;
  }

  /**
   * Forgets the per-metric state of `tags` (live entry, stored trail, registered signature): for
   * metrics no current birth declares, once their stale mark is handed to the writer. A name born
   * again later starts anew: its first value is stored at its own time (the store still drops an
   * identical re-delivery by tag and time).
   */
  #release(tags: readonly string[]): void {
    for (const tag of tags) {
      const trail = this.#trails.get(tag);
      this.#releasedMarks.delete(tag);
      if (trail?.newestIsMark === true) {
        this.#releasedMarks.add(tag, trail.newestMicros);
        if (this.#releasedMarks.size > this.#limits.maxMetrics) this.#releasedMarks.shift();
      }
      this.#live.delete(tag);
      this.#trails.delete(tag);
      this.#registered.delete(tag);
    }
  }

  /**
   * The stored trail of `tag`, or, for a tag released or forgotten with its stale mark newest,
   * a trail made again from that mark (so a birth restating the value it had lands after it).
   */
  #trailOf(tag: string): StoredTrail | undefined {
    const trail = this.#trails.get(tag);
    if (trail !== undefined) return trail;
    const markMicros = this.#releasedMarks.get(tag);
    if (markMicros === undefined) return undefined;
    this.#releasedMarks.delete(tag);
    const revived: StoredTrail = {
      newestMicros: markMicros,
      liveMicros: markMicros,
      newestIsMark: true,
      markDue: false,
      receivedMicros: undefined,
    };
    this.#trails.set(tag, revived);
    return revived;
  }

  #onNodeBirth(node: EdgeNodeState, topic: string, bytes: Uint8Array): void {
    const payload = this.#decode(topic, bytes);
    if (payload === undefined) {
      this.#refuseBirth(node, topic, "undecodable");
      return;
    }
    const bdSeq = bdSeqOf(payload);
    if (typeof bdSeq === "string" || payload.seq === undefined) {
      this.#refuseBirth(
        node,
        topic,
        typeof bdSeq === "string"
          ? `an NBIRTH ${bdSeq}`
          : "an NBIRTH needs a bdSeq metric and a seq ([tck-id-payloads-nbirth-bdseq], [tck-id-payloads-nbirth-seq])",
        payload,
      );
      return;
    }
    const problem = this.#birthProblem(node, undefined, payload);
    if (problem !== undefined) {
      this.#refuseBirth(node, topic, problem, payload);
      return;
    }
    // Its devices' births end but stay held (and counted) as `retired` until each device is born
    // again: what a DBIRTH no longer declares is released then.
    if (this.#birthOverLimit(node, undefined, topic, payload, birthSize(node.birth))) return;
    // A new session of the edge node: its devices are gone until they are born again in it.
    for (const [deviceId, device] of node.devices) {
      if (device.online) {
        this.#setNodeState(node, "offline", `a new NBIRTH (bdSeq ${bdSeq}) of its edge node`, { deviceId });
        this.#deviceDown(node, deviceId, device);
      }
      if (device.birth !== undefined) device.retired = device.birth;
      device.birth = undefined;
    }
    node.bdSeq = bdSeq;
    node.lastSeq = payload.seq;
    const firstBirth = node.births === 0;
    node.births++;
    node.unansweredRebirths = 0;
    this.#endAcks(node);
    const awaitAcks = payload.metrics.find((metric) => metric.name === AWAIT_ACKS_METRIC)?.value;
    if (
      (typeof awaitAcks === "number" && Number.isSafeInteger(awaitAcks) && awaitAcks >= 0) ||
      typeof awaitAcks === "bigint"
    ) {
      const base = Number(awaitAcks);
      node.ack = {
        bdSeq,
        received: base,
        stored: base,
        acknowledged: base,
        lastSentAt: undefined,
        tickets: [],
        timer: undefined,
        blocked: false,
      };
    }
    node.offlineSince = undefined;
    const before = node.birth;
    node.birth = this.#birth(node, undefined, payload);
    // Every device is offline now (its aliases freed): the new NBIRTH's are the only ones held.
    this.#unindexAliases(node, undefined, before);
    this.#indexAliases(node, undefined, node.birth);
    this.#heldMetrics += birthSize(node.birth) - birthSize(before);
    // Its NDEATH was read on the death watch before this birth was taken (both while the main
    // session was held): the birth is stored, and the edge node is dead at once (fix19o); also
    // when the host did not know the edge node when the watch read it (fix19v). Once: an edge
    // node that reuses its bdSeq (Eclipse Tahu) may be born again after that death, so it is
    // asked for a rebirth, and the next birth of that bdSeq is taken.
    const nodeKey = `${node.groupId}/${node.edgeNodeId}`;
    const early = this.#unknownDeaths.get(`${nodeKey}#${bdSeq}`);
    if (early !== undefined) {
      this.#unknownDeaths.delete(`${nodeKey}#${bdSeq}`);
      this.#keepAhead(node, early);
    }
    this.#pruneDeaths(node);
    const ahead = node.deathsAhead.find((death) => death.bdSeq === bdSeq && !death.spent);
    const dead = ahead !== undefined;
    if (dead) ahead.spent = true;
    // A death read on the watch whose main copy has not come yet may be behind this birth on the
    // main session (a birth of the session it ended): this birth is verified, not trusted, once
    // per such death (adv19, HIGH-1).
    const unpaired = dead ? [] : node.deathsAhead.filter((death) => !death.checked);
    for (const death of unpaired) death.checked = true;
    // The first birth of an edge node taken after a hold may be one the broker queued before a
    // death it dropped: verified like the edge nodes online when the hold ended (fix19v).
    const aftermath = firstBirth && !dead ? this.#inAftermath() : undefined;
    // The answer to a request after a possible loss (or any birth): the births restate everything.
    if (node.verify !== undefined) {
      node.verify = undefined;
      this.#verifying.delete(node);
    }
    this.#setNodeState(node, "online", `NBIRTH bdSeq ${bdSeq}`);
    // What it sent while unverified, decoded by the aliases this NBIRTH confirms, is good (fix19z).
    this.#verifyHeld(node, undefined, node.birth, `its NBIRTH bdSeq ${bdSeq}`);
    this.#take(node, undefined, node.birth, payload, topic, true);
    this.#birthTaken(node, true);
    this.#markAbsent(before, node.birth, `NBIRTH bdSeq ${bdSeq} of ${node.groupId}/${node.edgeNodeId}`);
    if (dead) {
      const reason = `NDEATH bdSeq ${bdSeq} (read on the death watch at ${new Date(ahead.at).toISOString()}, before this NBIRTH was taken)`;
      this.#nodeDied(node, reason);
      this.#reaskOffline(node, `${reason}: asked to be born again in case this NBIRTH came after it`);
    } else if (unpaired.length > 0)
      this.#unverified(
        node,
        `its NBIRTH was taken while ${unpaired.map((death) => `NDEATH bdSeq ${death.bdSeq} read on the death watch at ${new Date(death.at).toISOString()}`).join(", ")} had not come on the main session (this NBIRTH may be one sent before it)`,
      );
    else if (aftermath !== undefined) this.#unverified(node, `its first NBIRTH was taken after ${aftermath}`);
  }

  #onDeviceBirth(node: EdgeNodeState, deviceId: string, topic: string, bytes: Uint8Array): void {
    const payload = this.#decode(topic, bytes);
    if (payload === undefined) {
      this.#refuseBirth(node, topic, "undecodable");
      return;
    }
    if (this.#historyOnly(node)) {
      // A device born in a session the host no longer shows live: not taken (its aliases may
      // change), and nothing more of the session is (ADR 0043, amendment fix19o).
      node.lastSeq = undefined;
      this.#discard(payload);
      return;
    }
    if (node.state !== "online") {
      node.dataBeforeBirth++;
      this.#discard(payload);
      this.#requestRebirth(node, "data-before-birth", `${topic} before an NBIRTH in this session`);
      return;
    }
    if (!this.#checkSeq(node, payload, topic)) {
      this.#discard(payload);
      return;
    }
    const problem = this.#birthProblem(node, deviceId, payload);
    if (problem !== undefined) {
      this.#refuseBirth(node, topic, problem, payload);
      return;
    }
    const known = node.devices.get(deviceId);
    const before = known?.birth ?? known?.retired;
    if (this.#birthOverLimit(node, deviceId, topic, payload, birthSize(before))) return;
    const birth = this.#birth(node, deviceId, payload);
    this.#heldMetrics += birthSize(birth) - birthSize(before);
    this.#unindexDevice(node, deviceId);
    if (known?.online === true) this.#unindexAliases(node, deviceId, known.birth);
    node.devices.set(deviceId, { online: true, birth });
    this.#indexAliases(node, deviceId, birth);
    this.#setNodeState(node, "online", "DBIRTH", { deviceId });
    if (node.verify === undefined) this.#verifyHeld(node, deviceId, birth, `its DBIRTH of device ${deviceId}`);
    this.#take(node, deviceId, birth, payload, topic, true);
    this.#birthTaken(node, false);
    this.#markAbsent(before, birth, `DBIRTH of device ${deviceId} of ${node.groupId}/${node.edgeNodeId}`);
  }

  #onData(node: EdgeNodeState, deviceId: string | undefined, topic: string, bytes: Uint8Array): void {
    const device = deviceId === undefined ? undefined : node.devices.get(deviceId);
    const birth = deviceId === undefined ? node.birth : device?.birth;
    const payload = this.#decode(topic, bytes, birth);
    // Not read, so not the edge node's for certain (anyone may publish there): if it was, the
    // seq of its next message shows the loss.
    if (payload === undefined) return;
    if (this.#historyOnly(node)) {
      if (!this.#checkSeq(node, payload, topic) || birth === undefined) {
        // From here on its aliases cannot be trusted: discarded until its next NBIRTH.
        node.lastSeq = undefined;
        this.#discard(payload);
        return;
      }
      this.#takeAsHistory(node, deviceId, birth, payload, topic);
      return;
    }
    if (node.state !== "online") {
      node.dataBeforeBirth++;
      this.#discard(payload);
      this.#requestRebirth(node, "data-before-birth", `${topic} before an NBIRTH in this session`);
      return;
    }
    if (!this.#checkSeq(node, payload, topic)) {
      this.#discard(payload);
      return;
    }
    if (birth === undefined || (device !== undefined && !device.online)) {
      this.#discard(payload);
      this.#distrust(node, "unknown-device", `${topic}: no DBIRTH for device ${String(deviceId)} in this session`);
      return;
    }
    const ack = node.ack;
    const counted = ack !== undefined && deviceId !== undefined && !ack.blocked;
    const held = node.verify !== undefined && decodesWhole(birth, payload);
    if (counted) {
      // Acked by the number the edge node put in it, never by a count of what arrived (ADR 0037):
      // anything but exactly the next one is a gap, even one the 0–255 seq wraps over.
      const number = messageNumberOf(payload, birth);
      if (number !== ack.received + 1) {
        node.seqGaps++;
        this.#discard(payload);
        this.#distrust(
          node,
          "seq-gap",
          `${topic}: ${MESSAGE_NUMBER_METRIC} ${number === undefined ? "missing" : String(number)}, expected ${ack.received + 1}`,
        );
        return;
      }
    }
    if (held) this.#hold(node, deviceId, birth, payload, topic, counted);
    else this.#take(node, deviceId, birth, payload, topic, false);
    if (ack !== undefined && deviceId !== undefined && node.state === "online") {
      if (!counted) this.#requestRebirth(node, "samples-dropped", `${topic}: acks stopped since samples were dropped`);
      else {
        ack.received++;
        // A held message is never acknowledged in this birth (nor anything after it): the edge
        // node sends it again after its NBIRTH, the same row as the one released (fix19z).
        ack.tickets.push({ message: ack.received, ticket: held ? Number.POSITIVE_INFINITY : this.#writer.accepted });
        if (this.#writer.accepted <= this.#settledThrough) this.#onSettled(this.#settledThrough);
      }
    }
  }

  // ---- data held while unverified (ADR 0043, amendment fix19z) --------------------------------

  /**
   * Holds a data message of an unverified edge node (see {@link HeldMessage}). Its live values
   * stay as {@link #unverified} left them (uncertain, the reason named). Bounded: past a quarter
   * of `batching.maxQueuedSamples` held (half the writer's room before it congests, so releasing
   * them all at once with the births does not congest it by itself), the oldest held messages,
   * any edge node's, are stored uncertain ({@link #releaseHeld}), counted. The rebirth pacing
   * counts an edge node's held samples as part of its answer (`maxOutstandingRebirths`).
   */
  #hold(
    node: EdgeNodeState,
    deviceId: string | undefined,
    birth: Birth,
    payload: SparkplugPayload,
    topic: string,
    acked: boolean,
  ): void {
    const message: HeldMessage = {
      deviceId,
      birth,
      payload,
      topic,
      acked,
      reason: node.verify?.reason ?? "unverified",
      awaitingDeviceBirth: undefined,
      released: false,
    };
    node.held.push(message);
    node.heldSamples += payload.metrics.length;
    this.#heldOrder.push({ node, message });
    this.#heldSamples += payload.metrics.length;
    const bound = Math.max(1, Math.floor((this.#options.batching?.maxQueuedSamples ?? 200_000) / 4));
    while (this.#heldSamples > bound) {
      const oldest = this.#heldOrder.shift();
      if (oldest === undefined) break;
      if (oldest.message.released) continue;
      this.#releaseHeld(
        oldest.node,
        oldest.message,
        undefined,
        `more than ${bound} samples held (half of batching.maxQueuedSamples): the oldest stored without waiting`,
      );
      // The oldest held message overall is its edge node's oldest: released ones gather at the
      // front of its list, cut away once they are half of it (a filter per release was quadratic).
      const { node: owner } = oldest;
      owner.heldReleased++;
      if (owner.heldReleased >= 1_024 && owner.heldReleased * 2 >= owner.held.length) compactHeld(owner);
    }
    this.#scheduleVerify();
  }

  /**
   * Releases a held message: with `verifiedBy` (the birth that answered, of the same edge node or
   * device), each metric whose alias (or name) decodes to the same name and datatype in it as in
   * the birth it was decoded with is stored good, as the edge node sent it (the edge node's own
   * replay of it, `awaitHostAcks`, is then the same row); one whose decoding changed is refused
   * and counted in `discarded` (never stored under a guessed name or type). Without it, every
   * metric is stored uncertain naming `why`, counted in `heldUncertain`, unless its edge node
   * awaits acks for it: then it is left to the edge node (`heldReturned`). Stored as history: the
   * live view is the birth's (or stays stale).
   */
  #releaseHeld(node: EdgeNodeState, message: HeldMessage, verifiedBy: Birth | undefined, why: string): void {
    if (message.released) return;
    message.released = true;
    const { payload } = message;
    this.#heldSamples -= payload.metrics.length;
    node.heldSamples -= payload.metrics.length;
    const historical = (metric: SparkplugMetric): SparkplugMetric =>
      metric.isHistorical === true ? metric : { ...metric, isHistorical: true };
    if (verifiedBy === undefined && message.acked) {
      // Never acknowledged: its edge node sends it again after its next birth, by name, and that
      // copy is stored good. An uncertain row now would make that copy a conflict (fix19z).
      this.#counts.samples += payload.metrics.length;
      this.#counts.heldReturned += payload.metrics.length;
      return;
    }
    if (verifiedBy === undefined) {
      this.#counts.heldUncertain += payload.metrics.length;
      const reason = `${message.topic}: held while edge node ${node.groupId}/${node.edgeNodeId} was unverified (${message.reason}); ${why}: stored uncertain`;
      this.#take(
        node,
        message.deviceId,
        message.birth,
        { ...payload, metrics: payload.metrics.map(historical) },
        message.topic,
        false,
        reason,
      );
      return;
    }
    const kept: SparkplugMetric[] = [];
    const changed: string[] = [];
    for (const metric of payload.metrics) {
      const before = metricOf(message.birth, metric);
      const after = metricOf(verifiedBy, metric);
      if (
        before !== undefined &&
        after !== undefined &&
        before.name === after.name &&
        before.datatype === after.datatype
      )
        kept.push(historical(metric));
      else
        changed.push(
          `${metric.alias !== undefined ? `alias ${String(metric.alias)}` : `metric ${String(metric.name)}`} (${before === undefined ? "?" : `${before.name} ${before.datatype}`} → ${after === undefined ? "not in the birth" : `${after.name} ${after.datatype}`})`,
        );
    }
    if (changed.length > 0) {
      const count = payload.metrics.length - kept.length;
      this.#counts.samples += count;
      this.#counts.discarded += count;
      void this.#bus.publish("message-reject", {
        topic: message.topic,
        message: `${message.topic}: held while edge node ${node.groupId}/${node.edgeNodeId} was unverified (${message.reason}); ${why} decodes ${changed.join(", ")} otherwise: ${count} of its metrics refused (counted in samples.discarded)`,
      });
    }
    if (kept.length > 0)
      this.#take(node, message.deviceId, message.birth, { ...payload, metrics: kept }, message.topic, false);
  }

  /**
   * A birth of the edge node answered (verify ended by an NBIRTH, or a DBIRTH after it): the held
   * messages it covers (`deviceId` undefined: the edge node's own; else that device's) are
   * released against `birth`. After an NBIRTH, a device's held messages await its DBIRTH:
   * stored uncertain if the next NBIRTH, its death or `rebirthTimeoutMs` of reading comes first.
   */
  #verifyHeld(node: EdgeNodeState, deviceId: string | undefined, birth: Birth, what: string): void {
    if (node.held.length === 0) return;
    for (const message of node.held) {
      if (deviceId !== undefined) {
        if (message.deviceId === deviceId && message.awaitingDeviceBirth !== undefined)
          this.#releaseHeld(node, message, birth, what);
      } else if (message.deviceId === undefined) this.#releaseHeld(node, message, birth, what);
      else if (message.awaitingDeviceBirth !== undefined)
        this.#releaseHeld(node, message, undefined, `device ${message.deviceId} was not born again before ${what}`);
      else message.awaitingDeviceBirth = this.#readingClock();
    }
    compactHeld(node);
    if (this.#heldSamples === 0) while (this.#heldOrder.shift() !== undefined);
    this.#scheduleVerify();
  }

  /** Stores every message the edge node holds uncertain, naming `why` (see {@link #releaseHeld}). */
  #settleHeld(node: EdgeNodeState, why: string): void {
    if (node.held.length === 0) return;
    for (const message of node.held) this.#releaseHeld(node, message, undefined, why);
    node.held = [];
    node.heldReleased = 0;
    if (this.#heldSamples === 0) while (this.#heldOrder.shift() !== undefined);
  }

  /** Every edge node's held messages stored uncertain, naming `why`. */
  #settleAllHeld(why: string): void {
    if (this.#heldSamples === 0) return;
    for (const node of this.#nodes.values()) this.#settleHeld(node, why);
  }

  /** Devices' held messages that awaited their DBIRTH for `rebirthTimeoutMs` of reading: stored uncertain. */
  #sweepHeld(timeout: number): void {
    if (this.#heldSamples === 0) return;
    for (const node of this.#nodes.values()) {
      if (!node.held.some((message) => message.awaitingDeviceBirth !== undefined)) continue;
      for (const message of node.held)
        if (message.awaitingDeviceBirth !== undefined && this.#readingSince(message.awaitingDeviceBirth) >= timeout)
          this.#releaseHeld(
            node,
            message,
            undefined,
            `device ${String(message.deviceId)} not born again within rebirthTimeoutMs (${timeout} ms) of its edge node's NBIRTH`,
          );
      compactHeld(node);
    }
    if (this.#heldSamples === 0) while (this.#heldOrder.shift() !== undefined);
  }

  // ---- acknowledgements (ADR 0037) -----------------------------------------------------------

  #endAcks(node: EdgeNodeState): void {
    if (node.ack?.timer !== undefined) this.#clock.clearTimeout(node.ack.timer);
    node.ack = undefined;
  }

  /**
   * A birth of the edge node was taken (pushed to the writer): the request out to it, if any, is
   * answered once the writer settles what it has accepted so far (an NBIRTH starts the answer;
   * each DBIRTH after it moves the mark on), and its turn goes to the next waiting.
   */
  #birthTaken(node: EdgeNodeState, nodeBirth: boolean): void {
    const out = this.#rebirthsOut.get(node);
    if (out === undefined || (!nodeBirth && out.storedThrough === undefined)) return;
    out.storedThrough = this.#writer.accepted;
  }

  /** The writer settled every sample before `through`: what each edge node's DDATA that covers is acked. */
  #onSettled(through: number): void {
    this.#settledThrough = through;
    if (this.#rebirthsOut.size + this.#rebirthsWaiting.size > 0) this.#pumpRebirths();
    for (const node of this.#nodes.values()) {
      const ack = node.ack;
      if (ack === undefined || ack.blocked) continue;
      let stored = ack.stored;
      while (ack.tickets.length > 0 && ack.tickets[0]!.ticket <= through) stored = ack.tickets.shift()!.message;
      if (stored === ack.stored) continue;
      ack.stored = stored;
      this.#scheduleAck(node, ack);
    }
  }

  /** Sends the ack now, or when `ackIntervalMs` since the last one has passed. */
  #scheduleAck(node: EdgeNodeState, ack: AckState): void {
    if (ack.timer !== undefined) return;
    const interval = this.#options.ackIntervalMs ?? 1_000;
    const wait = ack.lastSentAt === undefined ? 0 : ack.lastSentAt + interval - this.#clock.now();
    if (wait <= 0) {
      this.#sendAck(node, ack);
      return;
    }
    ack.timer = this.#clock.setTimeout(() => {
      ack.timer = undefined;
      if (node.ack === ack) this.#sendAck(node, ack);
    }, wait);
  }

  #sendAck(node: EdgeNodeState, ack: AckState): void {
    const session = this.#session;
    if (ack.blocked || ack.stored <= ack.acknowledged || session === undefined || !session.client.connected) return;
    const now = this.#clock.now();
    // NCMD QoS 0, not retained ([tck-id-topics-ncmd-mqtt]), with a timestamp ([tck-id-topics-ncmd-timestamp]).
    const bytes = encodePayload({
      timestamp: now,
      metrics: [
        {
          name: STORED_THROUGH_METRIC,
          timestamp: now,
          datatype: "UInt64",
          value: ack.stored,
          properties: {
            bdSeq: { type: "UInt64", value: ack.bdSeq },
            hostId: { type: "String", value: this.#options.hostId },
          },
        },
      ],
    });
    session.client.publish(
      sparkplugTopic({ type: "NCMD", groupId: node.groupId, edgeNodeId: node.edgeNodeId }),
      Buffer.from(bytes),
      { qos: 0, retain: false },
    );
    ack.acknowledged = ack.stored;
    ack.lastSentAt = now;
    node.acksSent++;
  }

  #onNodeDeath(node: EdgeNodeState, topic: string, bytes: Uint8Array): void {
    const payload = this.#decode(topic, bytes);
    if (payload === undefined) {
      this.#untrustedDeath(node, topic, "NDEATH", "main");
      return;
    }
    const bdSeq = bdSeqOf(payload);
    // A death that cannot be paired with a birth (no bdSeq, or one outside 0–255) is malformed:
    // counted and refused, and, since it may be the edge node's own (it died), the edge node is
    // distrusted as after a refused birth: its live values stale and a rebirth asked for. An edge
    // node still alive is born again; a dead one is never shown good (ADR 0030, amendment 19i).
    if (typeof bdSeq === "string") {
      const detail = `${topic}: an NDEATH ${bdSeq}: refused; the edge node is distrusted until its next NBIRTH`;
      this.#reject(topic, detail);
      this.#distrust(node, "death-refused", detail);
      return;
    }
    // The watch's copy of this death is now in its place in the main session's order: a death
    // the watch read ahead is only ahead of a birth that comes BEFORE it on the main session. One
    // that comes before its birth here (a forged death for the next bdSeq, sent while the edge
    // node was dead) says nothing about that later birth (adversarial review adv19p, H1).
    // The watch's copy is consumed here if it came first, else this one waits for it (once).
    const key = deathKey(bdSeq, payload);
    let watchedFirst = false;
    const unknownKey = `${node.groupId}/${node.edgeNodeId}#${bdSeq}`;
    const early = this.#unknownDeaths.get(unknownKey);
    if (early !== undefined) {
      this.#unknownDeaths.delete(unknownKey);
      watchedFirst = early.key === key;
    }
    this.#pruneDeaths(node);
    // Pairs with exactly one watch copy of this very death (its key), never with another death of
    // its bdSeq (an edge node that reuses its bdSeq dies with it again: adv19, HIGH-1).
    const ahead = node.deathsAhead.findIndex((death) => death.key === key);
    if (ahead >= 0) {
      node.deathsAhead.splice(ahead, 1);
      watchedFirst = true;
    }
    if (!watchedFirst) {
      node.deathsTaken.push({ key, read: this.#readingClock() });
      if (node.deathsTaken.length > DEATHS_TAKEN_KEPT) node.deathsTaken.shift();
    }
    // A death whose bdSeq is not the current birth's belongs to an older session (a Will the
    // broker delivered late): it must not take the new session down.
    if (node.bdSeq !== undefined && bdSeq !== node.bdSeq) {
      node.staleDeaths++;
      this.#reject(
        topic,
        `NDEATH bdSeq ${String(bdSeq)} does not match the current NBIRTH bdSeq ${node.bdSeq}: stale, ignored`,
      );
      return;
    }
    node.lastDeathAt = this.#clock.now();
    this.#nodeDied(node, `NDEATH bdSeq ${String(bdSeq)}`);
    this.#endRebirthTurn(node);
    node.lastSeq = undefined;
    this.#session?.onFarewellProgress?.();
  }

  /**
   * The edge node's session is over: it and its devices offline, their live values stale.
   * [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline] and
   * [...-ndeath-node-tags-stale], [...-ndeath-devices-offline], [...-ndeath-devices-tags-stale]:
   * host time. `lastSeq` is kept: after a death read ahead on the watch, the session's messages
   * still held are checked by it and stored as history ({@link #historyOnly}).
   */
  #nodeDied(node: EdgeNodeState, reason: string): void {
    // Before the stale marks, so they land after what it held.
    this.#settleHeld(node, `${reason}: offline before an NBIRTH verified it`);
    const now = this.#clock.now();
    if (node.state !== "offline") node.offlineSince = now;
    for (const [deviceId, device] of node.devices) {
      if (!device.online) continue;
      this.#setNodeState(node, "offline", "NDEATH of its edge node", { deviceId, at: now });
      this.#deviceDown(node, deviceId, device);
    }
    this.#setNodeState(node, "offline", reason, { at: now });
  }

  /**
   * An NDEATH read on the death watch (never held), ahead of whatever the main session holds
   * before it (ADR 0043, amendment fix19o). Malformed, retained or oversized deaths, and deaths of
   * edge nodes the host does not follow, are left to the main session (which counts them). The
   * current birth's death takes the edge node offline now; a death of another bdSeq is kept (a
   * birth of it taken later is dead at once) and otherwise ignored as stale, as on the main
   * session ([tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline]
   * pairs a death with its birth by bdSeq).
   */
  #onWatchedDeath(session: Session, topic: string, bytes: Uint8Array, retained: boolean): void {
    if (this.#session !== session || session.closing || leftOnBroker(retained)) return;
    if (bytes.length > (this.#options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES)) return;
    let parsed: SparkplugTopic;
    try {
      parsed = parseSparkplugTopic(topic);
    } catch {
      return;
    }
    if (parsed.type !== "NDEATH" || !this.#groups.has(parsed.groupId)) return;
    if (parsed.edgeNodeId.length > NAME_KEPT_MAX) return;
    let payload: SparkplugPayload;
    try {
      payload = decodePayload(bytes);
    } catch {
      const node = this.#nodes.get(`${parsed.groupId}/${parsed.edgeNodeId}`);
      if (node !== undefined) this.#untrustedDeath(node, topic, "NDEATH", "watch");
      return;
    }
    const bdSeq = bdSeqOf(payload);
    if (typeof bdSeq === "string") return;
    const now = this.#clock.now();
    const death: WatchedDeath = {
      bdSeq,
      key: deathKey(bdSeq, payload),
      at: now,
      read: this.#readingClock(),
      spent: false,
      checked: false,
    };
    const nodeKey = `${parsed.groupId}/${parsed.edgeNodeId}`;
    const node = this.#nodes.get(nodeKey);
    if (node === undefined) {
      // Not known yet: its NBIRTH may wait on the held main session, and the broker may drop
      // this death from there. Kept for that birth (adversarial review adv19r, H1).
      const key = `${nodeKey}#${bdSeq}`;
      this.#unknownDeaths.delete(key);
      this.#unknownDeaths.add(key, death);
      while (this.#unknownDeaths.size > this.#limits.maxEdgeNodes) this.#unknownDeaths.shift();
      return;
    }
    // The main session took this very death first (the two sessions' copies race): it is in its
    // place in that session's order already, not ahead of a later birth (adv19p, H1). Consumed:
    // a later death with the same bytes (an edge node reusing bdSeq and Will) is a new one.
    this.#pruneDeaths(node);
    const taken = node.deathsTaken.findIndex((entry) => entry.key === death.key);
    if (taken >= 0) {
      node.deathsTaken.splice(taken, 1);
      return;
    }
    this.#keepAhead(node, death);
    node.lastDeathAt = now;
    if (node.bdSeq === bdSeq && node.state !== "offline") {
      this.#nodeDied(node, `NDEATH bdSeq ${bdSeq} (read on the death watch)`);
      this.#endRebirthTurn(node);
    }
  }

  /**
   * A death on a known edge node's (or online device's) topic that cannot be decoded (adversarial
   * review adv19, HIGH-2): the one rule for the main session's NDEATH and DDEATH and the death
   * watch's NDEATH. It may be the edge node's own (its Will, encoded by another schema or a buggy
   * encoder), and nothing follows a Will to show the loss, so it is a death the host cannot trust,
   * as one without bdSeq: on the main session (where it is counted in `messages.malformed` and
   * reported) the edge node is distrusted (`death-refused`: awaiting-rebirth, its live values and
   * its devices' stale with the reason, named in `health().problems`, a rebirth asked for). The
   * watch's copy, read ahead of what the main session still holds, is not counted (the main
   * session counts its own copy); it makes an online edge node unverified (its values uncertain,
   * a rebirth asked for, offline without an answer within `rebirthTimeoutMs`), so a main copy the
   * broker drops still leaves nothing good.
   */
  #untrustedDeath(node: EdgeNodeState, topic: string, type: "NDEATH" | "DDEATH", via: "main" | "watch"): void {
    const detail = `${topic}: an ${type} that cannot be decoded${via === "watch" ? " (read on the death watch)" : ""}: refused; the edge node is distrusted until its next NBIRTH`;
    if (via === "watch") {
      if (node.verify === undefined) this.#unverified(node, detail);
      return;
    }
    this.#distrust(node, "death-refused", detail);
  }

  /**
   * Whether the edge node's messages are taken as history only: its NDEATH was read ahead on the
   * watch (offline, a death of its birth's bdSeq in `deathsAhead`) and the main session still delivers what
   * the session sent before it. That data, of the birth the host holds and checked by `seq`, is
   * stored, never shown live, and marked stale again after it; a gap or a DBIRTH ends this (what
   * follows is discarded, as after any gap).
   */
  #historyOnly(node: EdgeNodeState): boolean {
    if (node.lastSeq === undefined || node.birth === undefined || node.state !== "offline") return false;
    this.#pruneDeaths(node);
    return node.deathsAhead.some((death) => death.bdSeq === node.bdSeq);
  }

  /** Keeps a death read on the watch until its main copy comes (see `EdgeNodeState.deathsAhead`). */
  #keepAhead(node: EdgeNodeState, death: WatchedDeath): void {
    node.deathsAhead.push(death);
    if (node.deathsAhead.length > DEATHS_TAKEN_KEPT) node.deathsAhead.shift();
  }

  /**
   * Drops the deaths of an edge node whose other copy did not come within `rebirthTimeoutMs` of
   * the host reading since (held time not counted): the broker dropped it (the main session's, from
   * its queue while the host was held) or never sent it (the watch's, not subscribed then). So no
   * entry outlives the hold it came in to pair with, or swallow, a later death (adv19, HIGH-2).
   */
  #pruneDeaths(node: EdgeNodeState): void {
    const timeout = this.#options.rebirthTimeoutMs ?? 10_000;
    while (node.deathsAhead.length > 0 && this.#readingSince(node.deathsAhead[0]!.read) >= timeout)
      node.deathsAhead.shift();
    while (node.deathsTaken.length > 0 && this.#readingSince(node.deathsTaken[0]!.read) >= timeout)
      node.deathsTaken.shift();
  }

  /** Takes a data message of a session in {@link #historyOnly}: stored as history, then marked stale again. */
  #takeAsHistory(
    node: EdgeNodeState,
    deviceId: string | undefined,
    birth: Birth,
    payload: SparkplugPayload,
    topic: string,
  ): void {
    const metrics = payload.metrics.map((metric) => ({ ...metric, isHistorical: true }));
    this.#take(node, deviceId, birth, { ...payload, metrics }, topic, false);
    const what = deviceId === undefined ? "edge node" : `device ${deviceId} of`;
    this.#markStale(
      this.#tagsOf(node, deviceId),
      this.#clock.now(),
      `${what} ${node.groupId}/${node.edgeNodeId} offline: data of its session taken after its NDEATH was read on the death watch, stored as history`,
    );
  }

  /**
   * The host may have missed the edge node's messages (a DDEATH, data, a birth): every live value
   * it holds of the edge node turns uncertain (live view only; the stored mark follows if it is
   * declared offline), a rebirth is asked for, and without an NBIRTH `rebirthTimeoutMs` after the
   * request it is declared offline, its devices too (ADR 0043, amendment fix19o). It stays `online`
   * meanwhile: its deaths are read on the death watch, which is never held, and its data is held
   * until its NBIRTH ({@link #hold}: it may come under an alias map the host missed; amendment
   * fix19z).
   */
  #unverified(node: EdgeNodeState, reason: string): void {
    if (node.state !== "online") return;
    const now = this.#clock.now();
    this.#markLiveUncertain(
      this.#tagsOf(node, undefined),
      `edge node ${node.groupId}/${node.edgeNodeId} unverified: ${reason}; a rebirth is asked for`,
    );
    const verify: NonNullable<EdgeNodeState["verify"]> = { since: now, reason, requested: undefined };
    node.verify = verify;
    this.#verifying.add(node);
    if (this.#requestRebirth(node, "messages-maybe-lost", reason)) verify.requested = this.#readingClock();
    this.#scheduleVerify();
  }

  /**
   * Host time the host held its broker connection (see {@link Session.heldSince}) since it
   * started, the current hold included: while held it reads nothing, so an answer it asked for
   * may wait for it at the broker. The rebirth timeout counts only the rest (adv19r, M3).
   */
  #heldMs(now = this.#clock.now()): number {
    const since = this.#session?.heldSince;
    return this.#heldBefore + (since === undefined ? 0 : Math.max(0, now - since));
  }

  #readingClock(): ReadingClock {
    const now = this.#clock.now();
    return { at: now, held: this.#heldMs(now) };
  }

  /** Time since `from` during which the host read from the broker (not held), ms. */
  #readingSince(from: ReadingClock): number {
    const now = this.#clock.now();
    return now - from.at - (this.#heldMs(now) - from.held);
  }

  /** The last hold's reason while its aftermath lasts (`rebirthTimeoutMs` of reading after its end), else undefined. */
  #inAftermath(): string | undefined {
    const aftermath = this.#aftermath;
    if (aftermath === undefined) return undefined;
    if (this.#readingSince(aftermath.since) < (this.#options.rebirthTimeoutMs ?? 10_000)) return aftermath.reason;
    this.#aftermath = undefined;
    return undefined;
  }

  /**
   * Asks an offline edge node for a rebirth, again every `rebirthIntervalMs` for
   * `rebirthTimeoutMs` of reading: it may have been born again in a message the broker dropped,
   * or after a death the host took for its birth's.
   */
  #reaskOffline(node: EdgeNodeState, reason: string): void {
    this.#reask.set(node, reason);
    node.reaskSince = this.#readingClock();
    this.#requestRebirth(node, "messages-maybe-lost", reason);
    this.#scheduleVerify();
  }

  /** The session's inbox lets MQTT.js read on after holding it: what the broker had may have been dropped. */
  #onHoldEnd(session: Session): void {
    const since = session.heldSince;
    session.heldSince = undefined;
    if (since !== undefined) this.#heldBefore += Math.max(0, this.#clock.now() - since);
    if (this.#session !== session || session.closing || this.#stopping || since === undefined) return;
    const reason = `the host held its broker connection from ${new Date(since).toISOString()} (its store or queue was behind): messages the broker held for it meanwhile may have been lost`;
    this.#aftermath = { reason: `a hold (${reason})`, since: this.#readingClock() };
    // Its own STATE offline (an old session's Will delivered late, retained) may have been among
    // them: said online again (same timestamp, idempotent for edge nodes), so the retained STATE
    // is not left offline while this host runs.
    if (session.online) void this.#publishOnline(session).catch(() => undefined);
    for (const node of this.#nodes.values()) {
      if (node.state === "online") this.#unverified(node, reason);
      // Died while the host was held, or before the main session took its death (read on the watch):
      // it may have been born again in a message the broker dropped.
      else if (
        node.state === "offline" &&
        (node.deathsAhead.length > 0 || (node.lastDeathAt !== undefined && node.lastDeathAt >= since))
      )
        this.#reaskOffline(node, reason);
    }
    this.#scheduleVerify();
  }

  /** Runs {@link #verifySweep} soon while an edge node awaits the rebirth it was asked for. */
  #scheduleVerify(): void {
    if (
      this.#verifyTimer !== undefined ||
      (this.#verifying.size + this.#reask.size + this.#rebirthsOut.size + this.#rebirthsWaiting.size === 0 &&
        this.#heldSamples === 0)
    )
      return;
    const timeout = this.#options.rebirthTimeoutMs ?? 10_000;
    this.#verifyTimer = this.#clock.setTimeout(
      () => {
        this.#verifyTimer = undefined;
        this.#verifySweep();
      },
      Math.min(VERIFY_SWEEP_MS, timeout),
    );
  }

  /** Sends the requests held back, and declares offline who did not answer within `rebirthTimeoutMs`. */
  #verifySweep(): void {
    if (this.#stopping) return;
    this.#pumpRebirths();
    const now = this.#clock.now();
    const timeout = this.#options.rebirthTimeoutMs ?? 10_000;
    this.#sweepHeld(timeout);
    // Asked again every rebirthIntervalMs while the time allows: the broker's queue for the host
    // may still have been full when an answer came (the inbox is empty before the broker's is).
    const interval = this.#options.rebirthIntervalMs ?? 5_000;
    const due = (node: EdgeNodeState): boolean =>
      node.lastRebirthAt === undefined || now - node.lastRebirthAt >= Math.max(interval, this.#rebirthInterval(node));
    for (const [node, reason] of [...this.#reask]) {
      if (node.state !== "offline" || node.reaskSince === undefined || this.#readingSince(node.reaskSince) >= timeout)
        this.#reask.delete(node);
      else if (due(node)) this.#requestRebirth(node, "messages-maybe-lost", reason);
    }
    for (const node of [...this.#verifying]) {
      const verify = node.verify;
      if (verify === undefined || node.state === "offline") {
        node.verify = undefined;
        this.#verifying.delete(node);
        continue;
      }
      if (verify.requested === undefined) {
        if (this.#requestRebirth(node, "messages-maybe-lost", verify.reason)) verify.requested = this.#readingClock();
      } else if (this.#readingSince(verify.requested) >= timeout) {
        const held = now - verify.requested.at - this.#readingSince(verify.requested);
        this.#nodeDied(
          node,
          `no NBIRTH within rebirthTimeoutMs (${timeout} ms) of the host reading from the broker after the rebirth request sent ${new Date(verify.requested.at).toISOString()} because ${verify.reason} (counted only while the host read: ${Math.round(held)} ms it held its broker connection since are not counted)`,
        );
        node.lastSeq = undefined;
      } else if (due(node)) this.#requestRebirth(node, "messages-maybe-lost", verify.reason);
    }
    this.#scheduleVerify();
  }

  #onDeviceDeath(node: EdgeNodeState, deviceId: string, topic: string, bytes: Uint8Array): void {
    const payload = this.#decode(topic, bytes);
    if (payload === undefined) {
      if (node.state === "online" && node.devices.get(deviceId)?.online === true)
        this.#untrustedDeath(node, topic, "DDEATH", "main");
      return;
    }
    if (this.#historyOnly(node)) {
      if (!this.#checkSeq(node, payload, topic)) {
        node.lastSeq = undefined;
        return;
      }
      const device = node.devices.get(deviceId);
      if (device?.online === true) {
        this.#deviceDown(node, deviceId, device);
        this.#setNodeState(node, "offline", "DDEATH", { deviceId });
      }
      return;
    }
    if (node.state !== "online") {
      this.#discard(payload);
      return;
    }
    if (!this.#checkSeq(node, payload, topic)) return;
    const device = node.devices.get(deviceId);
    if (device === undefined || !device.online) return;
    this.#deviceDown(node, deviceId, device);
    // [tck-id-operational-behavior-edge-node-termination-host-action-ddeath-devices-tags-stale]: the
    // DDEATH's timestamp, unless it is further ahead than a real time can be: then host time.
    const now = this.#clock.now();
    const stamped = payload.timestamp;
    const ahead = stamped !== undefined && this.#aheadOfHost(stamped, now);
    this.#setNodeState(
      node,
      "offline",
      ahead
        ? `DDEATH (timestamped ${timeText(stamped)}, more than maxClockSkewMs ahead of the host's clock: taken at host time)`
        : "DDEATH",
      { deviceId, at: stamped === undefined || ahead ? now : stamped },
    );
  }

  /** Qualified tag names of the metrics born for the node (with its devices) or one device. */
  #tagsOf(node: EdgeNodeState, deviceId: string | undefined): string[] {
    const births: Birth[] = [];
    if (deviceId === undefined) {
      if (node.birth !== undefined) births.push(node.birth);
      for (const device of node.devices.values()) if (device.birth !== undefined) births.push(device.birth);
    } else {
      const birth = node.devices.get(deviceId)?.birth;
      if (birth !== undefined) births.push(birth);
    }
    const tags: string[] = [];
    for (const birth of births)
      for (const info of birth.byName.values()) if (info.tag !== undefined) tags.push(info.tag);
    return tags;
  }

  /**
   * The live part of {@link #markStale} alone: the live values of `tags` uncertain "last usable
   * value" with `reason`, at their own time, nothing stored (the stored mark is placed, right after the last value
   * received, if and when trust is lost for good).
   */
  #markLiveUncertain(tags: readonly string[], reason: string): void {
    const stale = quality("uncertain", reason, QualityCodes.UncertainNoCommunicationLastUsableValue);
    const marked: SparkplugLiveMetric[] = [];
    for (const tag of tags) {
      const entry = this.#live.get(tag);
      if (entry === undefined || entry.sample.quality.code === stale.code) continue;
      // At the value's own time, so the next value the edge node sends replaces it.
      const updated: SparkplugLiveMetric = { ...entry, sample: { ...entry.sample, quality: stale } };
      this.#live.set(tag, updated);
      this.#marks.add(updated);
      marked.push(updated);
    }
    if (marked.length > 0) void this.#bus.publish("live-update", { metrics: marked });
  }

  /**
   * Marks the live values of `tags` stale: uncertain "last usable value", at `at` (a host time
   * or a wire time already checked by {@link #wireTime}). The stale mark is also stored, once
   * per last value: a row without a value (`null`, bad `BadNoCommunication`, the
   * same reason) in the edge node's clock, 1 µs ({@link microAfter}) after the last value the
   * host received for the tag — the last moment it knew the value. So it lands after that value
   * and before any data of the next session whatever the skew between the two clocks, and what
   * the edge node measured meanwhile, replayed later as history, lands after it (ADR 0043,
   * amendment 19z). A tag whose live value is already stale still gets its stored mark.
   */
  #markStale(tags: readonly string[], at: number, reason: string): void {
    const marked: SparkplugLiveMetric[] = [];
    const samples: Sample[] = [];
    const stale = quality("uncertain", reason, QualityCodes.UncertainNoCommunicationLastUsableValue);
    const gap = quality("bad", reason, QualityCodes.BadNoCommunication);
    for (const tag of tags) {
      const entry = this.#live.get(tag);
      if (entry === undefined) continue;
      const trail = this.#trails.get(tag);
      if (trail?.markDue === true) {
        const storedAt = microAfter(trail.newestMicros);
        if (storedAt <= SAMPLE_TIME_MAX) {
          // The last live value received is older than the newest row (the edge clock stepped
          // back): a mark right after it too, so history does not read it good across the loss.
          const received = trail.receivedMicros;
          if (received !== undefined && received + 1 < trail.newestMicros)
            samples.push({ tag, value: null, timestamp: microAfter(received), quality: gap });
          // A newest row that is a mark already (a clock step back's, {@link #trace}) needs no second.
          if (!trail.newestIsMark) {
            samples.push({ tag, value: null, timestamp: storedAt, quality: gap });
            trail.newestMicros += 1;
            trail.liveMicros = trail.newestMicros;
            trail.newestIsMark = true;
          }
          trail.markDue = false;
          trail.receivedMicros = undefined;
        }
      }
      if (entry.sample.quality.code === stale.code) continue;
      // Never before the value it marks (live view only: it keeps the host's time of the loss).
      const timestamp = at > entry.sample.timestamp ? at : entry.sample.timestamp + 1;
      const sample: Sample = { tag, value: entry.sample.value, timestamp, quality: stale };
      const updated: SparkplugLiveMetric = { ...entry, sample };
      this.#live.set(tag, updated);
      this.#marks.add(updated);
      marked.push(updated);
    }
    // Never dropped for the writer's bound: the trails above already count them stored (one or
    // two per tag, bounded by limits.maxMetrics; ADR 0043, amendment fix19n).
    if (samples.length > 0) this.#writer.push(samples, () => true);
    if (marked.length > 0) void this.#bus.publish("live-update", { metrics: marked });
  }

  /**
   * Reports a metric the host did not take as it came (`metric-issue`); with `mark`, its live
   * value (if any) is no longer its current one and takes `mark.quality` with `detail` as reason,
   * at the later of its own time and `mark.at` (live view only: nothing is stored for it).
   */
  #metricIssue(
    node: EdgeNodeState,
    deviceId: string | undefined,
    info: MetricInfo,
    issue: SparkplugHostEvents["metric-issue"]["issue"],
    detail: string,
    mark?: { readonly at: number; readonly quality: Quality },
  ): void {
    if (info.tag === undefined) return;
    const entry = this.#live.get(info.tag);
    if (mark !== undefined && entry !== undefined) {
      // A wire time ahead of the host's clock would hold the live view there: the mark keeps the
      // live value's own time instead, so the next real sample replaces it.
      const at =
        Number.isFinite(mark.at) && mark.at <= SAMPLE_TIME_MAX && !this.#aheadOfHost(mark.at, this.#clock.now())
          ? mark.at
          : entry.sample.timestamp;
      const sample: Sample = {
        ...entry.sample,
        timestamp: Math.max(entry.sample.timestamp, at),
        quality: { ...mark.quality, reason: detail },
      };
      const updated: SparkplugLiveMetric = { ...entry, sample };
      this.#live.set(info.tag, updated);
      this.#marks.add(updated);
      void this.#bus.publish("live-update", { metrics: [updated] });
    }
    void this.#bus.publish("metric-issue", {
      tag: info.tag,
      groupId: node.groupId,
      edgeNodeId: node.edgeNodeId,
      ...(deviceId === undefined ? {} : { deviceId }),
      metric: info.name,
      issue,
      detail,
    });
  }

  #birth(node: EdgeNodeState, deviceId: string | undefined, payload: SparkplugPayload): Birth {
    const birth: Birth = { byAlias: new Map(), byName: new Map() };
    const tags: Tag[] = [];
    for (const metric of payload.metrics) {
      if (metric.name === undefined || metric.datatype === undefined) continue;
      let tag: string | undefined;
      try {
        tag = qualifiedTagName({
          groupId: node.groupId,
          edgeNodeId: node.edgeNodeId,
          ...(deviceId === undefined ? {} : { deviceId }),
          metric: metric.name,
        });
      } catch {
        tag = undefined;
      }
      const info: MetricInfo = { name: metric.name, datatype: metric.datatype, tag };
      const previous = tag === undefined ? undefined : this.#live.get(tag)?.datatype;
      if (previous !== undefined && previous !== metric.datatype) {
        node.retypedMetrics++;
        this.#metricIssue(
          node,
          deviceId,
          info,
          "retyped",
          `a birth gave ${metric.datatype} to a metric born ${previous} before: its values are ${metric.datatype} from now on`,
        );
      }
      birth.byName.set(metric.name, info);
      if (metric.alias !== undefined) birth.byAlias.set(metric.alias, info);
      if (tag !== undefined && this.#options.registerTags !== false) {
        const definition = this.#tagDefinition(metric);
        if (definition !== undefined) {
          const signature = JSON.stringify(definition);
          if (this.#registered.get(tag) !== signature) {
            try {
              tags.push(...defineTags({ [tag]: definition }).list());
              this.#registered.set(tag, signature);
            } catch {
              // Metadata Kiln refuses (a range on a string...): the tag is stored without it.
            }
          }
        }
      }
    }
    if (tags.length > 0) this.#writer.register(tags);
    return birth;
  }

  #tagDefinition(metric: SparkplugMetric): TagDefinitionInput | undefined {
    const dataType = tagDataTypeOfSparkplug(metric.datatype!);
    if (dataType === undefined) return undefined;
    const properties = metric.properties ?? {};
    const text = (key: string): string | undefined => {
      const value = properties[key]?.value;
      return typeof value === "string" ? value : undefined;
    };
    const number = (key: string): number | undefined => {
      const value = properties[key]?.value;
      return typeof value === "number" && Number.isFinite(value) ? value : undefined;
    };
    const unit = text("engUnit");
    const description = text("description");
    const low = number("engLow");
    const high = number("engHigh");
    const numeric = dataType !== "bool" && dataType !== "string";
    return {
      dataType,
      ...(unit === undefined ? {} : { unit }),
      ...(description === undefined ? {} : { description }),
      ...(numeric && low !== undefined && high !== undefined && low <= high ? { range: { min: low, max: high } } : {}),
    };
  }

  /**
   * Records a value the host stores in the tag's {@link StoredTrail} and returns the row to store.
   * Any value received makes a stale mark due at the next loss of trust, whatever its time
   * (tracked by arrival, not by time: an edge clock that stepped back sends older times). A birth
   * value for a tag whose newest stored row is a stale mark, at or before the mark, is stored
   * 1 µs ({@link microAfter}) after the mark instead, its reason ending with
   * {@link RESTATED_REASON} and its own time: otherwise it would fall before the mark (or repeat
   * the stored row, dropped as a re-delivery) and history would read "no communication" for the
   * whole new session. A value further ahead than `maxClockSkewMs` does not move `newest` (the
   * mark is never put at a time no clock can have had yet).
   *
   * The one test of a clock step back (ADR 0043, amendments 19u and fix19s): a live DATA value
   * (not a birth, not historical, not ahead) older than the tag's newest stored row, whatever
   * stored that row (a value, a mark, a restated birth). It is stored at its own time and
   * `steppedBack` is true (the caller shows it nowhere and marks the live value uncertain); when
   * the newest row is not a mark already, a mark (`null`, bad `BadNoCommunication`, the step
   * named) is also stored 1 µs after it, so history does not read that row good for a session
   * whose values all fall before it.
   */
  /**
   * The host time an untimed live value of `tag` is stored and shown at: `now`, or 1 µs
   * ({@link microAfter}) after the tag's newest stored row when that is not earlier. Untimed values
   * the host takes in within one millisecond (one socket read delivers many) each get a time of
   * their own, so each is stored once and the newest received is the one shown; at `now` for all,
   * the store kept the first as a (tag, time) re-delivery and dropped the rest as conflicts
   * (adversarial review adv19y, HIGH-1). A replay of an untimed value is stored again (its time is
   * the host's, not the edge node's): such values are not idempotent, as documented.
   */
  #untimedTime(tag: string | undefined, now: number): number {
    const trail = tag === undefined ? undefined : this.#trails.get(tag);
    if (trail === undefined || microsOf(now) > trail.newestMicros) return now;
    const after = microAfter(trail.newestMicros);
    return after <= SAMPLE_TIME_MAX ? after : now;
  }

  #trace(
    sample: Sample,
    isBirth: boolean,
    ahead: boolean,
    topic: string,
    historical: boolean,
    samples: Sample[],
  ): boolean {
    const trail = this.#trailOf(sample.tag);
    const micros = microsOf(sample.timestamp);
    const received = historical || ahead ? undefined : micros;
    if (trail === undefined) {
      if (!ahead)
        this.#trails.set(sample.tag, {
          newestMicros: micros,
          liveMicros: received ?? Number.NEGATIVE_INFINITY,
          newestIsMark: false,
          markDue: true,
          receivedMicros: received,
        });
      samples.push(sample);
      return false;
    }
    trail.markDue = true;
    if (received !== undefined) trail.receivedMicros = received;
    if (!isBirth && received !== undefined && micros < trail.liveMicros) {
      samples.push(sample);
      const markAt = microAfter(trail.newestMicros);
      if (!trail.newestIsMark && markAt <= SAMPLE_TIME_MAX) {
        const reason = `${topic}: the edge node's clock stepped back (a live value timestamped ${timeText(sample.timestamp)} arrived after a row stored at ${timeText(trail.newestMicros / 1000)}); this session's values are stored at their own, earlier times`;
        const mark: Sample = {
          tag: sample.tag,
          value: null,
          timestamp: markAt,
          quality: quality("bad", reason, QualityCodes.BadNoCommunication),
        };
        this.#ownRows.add(mark);
        samples.push(mark);
        trail.newestMicros += 1;
        trail.liveMicros = trail.newestMicros;
        trail.newestIsMark = true;
      }
      return true;
    }
    if (isBirth && trail.newestIsMark && micros <= trail.newestMicros && !ahead) {
      const timestamp = microAfter(trail.newestMicros);
      if (timestamp <= SAMPLE_TIME_MAX) {
        trail.newestMicros += 1;
        trail.liveMicros = trail.newestMicros;
        trail.newestIsMark = false;
        trail.receivedMicros = trail.newestMicros;
        const given = sample.quality.reason;
        const restated = `${RESTATED_REASON} (${topic}, measured at ${timeText(sample.timestamp)})`;
        const row: Sample = {
          ...sample,
          timestamp,
          quality: {
            ...sample.quality,
            reason: given === undefined || given === "" ? restated : `${given}; ${restated}`,
          },
        };
        this.#ownRows.add(row);
        samples.push(row);
        return false;
      }
    }
    if (received !== undefined && micros > trail.liveMicros) trail.liveMicros = micros;
    if (!ahead && micros > trail.newestMicros) {
      trail.newestMicros = micros;
      trail.newestIsMark = false;
    }
    samples.push(sample);
    return false;
  }

  /**
   * The one check of every time the host takes from the wire (a metric's, a payload's, a DDEATH's;
   * births, data, deaths and the marks of refused values alike): whether it is more than
   * `maxClockSkewMs` ahead of the host's clock `now`, so no real measurement can carry it yet
   * (ADR 0043, amendment of 2026-12-01).
   */
  #aheadOfHost(timestamp: number, now: number): boolean {
    return timestamp > now + (this.#options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS);
  }

  #aheadDetail(topic: string, timestamp: number, kind: "live" | "historical"): string {
    return `${topic}: a ${kind} value timestamped ${timeText(timestamp)}, more than ${this.#options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS} ms (maxClockSkewMs) ahead of the host's clock: stored, ${kind === "live" ? "not shown in the live view" : "as history"}`;
  }

  /** Turns the metrics of a birth or data message into samples: store them, update the live view. */
  #take(
    node: EdgeNodeState,
    deviceId: string | undefined,
    birth: Birth,
    payload: SparkplugPayload,
    topic: string,
    isBirth: boolean,
    unverified?: string,
  ): void {
    const samples: Sample[] = [];
    const live: SparkplugLiveMetric[] = [];
    const now = this.#clock.now();
    const infos: (MetricInfo | undefined)[] = [];
    for (const metric of payload.metrics) {
      const byAlias = !isBirth && metric.alias !== undefined ? birth.byAlias.get(metric.alias) : undefined;
      const info =
        !isBirth && metric.alias !== undefined
          ? byAlias
          : metric.name !== undefined
            ? birth.byName.get(metric.name)
            : undefined;
      // An alias and a name that the birth gave to two metrics: which one is meant is not known,
      // so it is treated as an alias the birth did not announce (issue 19).
      const contradicted = byAlias !== undefined && metric.name !== undefined && metric.name !== byAlias.name;
      if ((info === undefined || contradicted) && !isBirth) {
        // One metric the birth did not announce: the alias map cannot be trusted for any of them.
        const what = contradicted
          ? `alias ${String(metric.alias)} (${JSON.stringify(byAlias.name)} in the birth) given with the name ${JSON.stringify(metric.name)}`
          : metric.alias !== undefined
            ? `alias ${String(metric.alias)}`
            : `metric ${String(metric.name)}`;
        this.#counts.samples += payload.metrics.length;
        this.#counts.discarded += payload.metrics.length;
        node.unknownAliases++;
        this.#distrust(node, "unknown-alias", `${topic}: ${what} is not in the birth certificate`);
        return;
      }
      infos.push(info);
    }
    for (let index = 0; index < payload.metrics.length; index++) {
      const metric = payload.metrics[index]!;
      const info = infos[index];
      this.#counts.samples++;
      if (info === undefined) {
        // A birth metric without a name or datatype ([tck-id-topics-nbirth-metrics]): nothing to store it as.
        this.#counts.unstorable++;
        continue;
      }
      // A metric without its own timestamp takes its payload's; with neither ([tck-id-payloads-
      // name-birth-data-requirement] broken) the host's receive time is not the sample's time.
      const untimed = metric.timestamp === undefined && payload.timestamp === undefined;
      if (untimed && metric.isHistorical === true) {
        // History that cannot be placed in time: refused, never stored at a made-up time.
        this.#counts.untimed++;
        this.#counts.discarded++;
        this.#metricIssue(
          node,
          deviceId,
          info,
          "no-timestamp",
          `${topic}: a historical value with no timestamp (neither the metric's nor the payload's): cannot be placed in time, refused`,
        );
        continue;
      }
      const timestamp = untimed ? this.#untimedTime(info.tag, now) : (metric.timestamp ?? payload.timestamp ?? now);
      // A datatype on the wire that is not the birth's: the value was encoded as another type, so
      // it is not the value meant for this metric (a Boolean sent as Int32 7). Refused.
      if (!isBirth && metric.datatype !== undefined && metric.datatype !== info.datatype) {
        this.#counts.mistyped++;
        this.#metricIssue(
          node,
          deviceId,
          info,
          "datatype-mismatch",
          `${topic}: a ${metric.datatype} ${shown(metric.value)} for a metric born ${info.datatype}: refused`,
          { at: timestamp, quality: quality("bad", undefined, QualityCodes.BadTypeMismatch) },
        );
        continue;
      }
      const value = tagValueOfMetric(metric.value, info.datatype);
      if (info.tag === undefined || value === undefined || timestamp < SAMPLE_TIME_MIN || timestamp > SAMPLE_TIME_MAX) {
        this.#counts.unstorable++;
        if (info.tag !== undefined && metric.isHistorical !== true && this.#live.has(info.tag))
          this.#metricIssue(
            node,
            deviceId,
            info,
            "unstorable",
            `${topic}: a newer value the host cannot store (${value === undefined ? `a ${info.datatype} ${shown(metric.value)}` : `timestamp ${timestamp}`}): not stored`,
            { at: timestamp, quality: quality("uncertain", undefined, QualityCodes.UncertainLastUsableValue) },
          );
        continue;
      }
      const given = qualityOfMetric(metric.properties, value === null);
      let untimedReason: string | undefined;
      if (untimed) {
        this.#counts.untimed++;
        untimedReason = `${topic}: no timestamp (neither the metric's nor the payload's): taken at the host's receive time ${timeText(timestamp)}, not the time it was measured`;
        this.#metricIssue(node, deviceId, info, "no-timestamp", untimedReason);
      }
      const sample: Sample = {
        tag: info.tag,
        value,
        timestamp,
        quality:
          given.severity !== "good"
            ? given
            : unverified !== undefined
              ? quality("uncertain", unverified, QualityCodes.Uncertain)
              : untimedReason !== undefined
                ? quality("uncertain", untimedReason, QualityCodes.Uncertain)
                : given,
      };
      let steppedBack = false;
      if (metric.isTransient === true) this.#counts.transient++;
      else
        steppedBack = this.#trace(
          sample,
          isBirth,
          this.#aheadOfHost(timestamp, now),
          topic,
          metric.isHistorical === true,
          samples,
        );
      if (metric.isHistorical === true) {
        this.#counts.historical++;
        // Stored as the edge node published it, never in the live view; but a time no clock can
        // have had yet is said so, as for a live value.
        if (this.#aheadOfHost(timestamp, now)) {
          this.#counts.futureDated++;
          this.#metricIssue(
            node,
            deviceId,
            info,
            "future-timestamp",
            this.#aheadDetail(topic, timestamp, "historical"),
          );
        }
        continue;
      }
      // A time further ahead of the host's clock than `maxClockSkewMs` is not a time the value
      // can have been measured at: the value is stored (as it came) but never shown in the live
      // view, where it would hold back every later sample ("never back in time"). The live value
      // it would have replaced is no longer current: uncertain, with the reason, at its own time.
      if (this.#aheadOfHost(timestamp, now)) {
        this.#counts.futureDated++;
        this.#metricIssue(
          node,
          deviceId,
          info,
          "future-timestamp",
          this.#aheadDetail(topic, timestamp, "live"),
          // At 0: the mark keeps the live value's own time, so the next real sample replaces it.
          { at: 0, quality: quality("uncertain", undefined, QualityCodes.UncertainLastUsableValue) },
        );
        continue;
      }
      // The live view never goes back in time: an older live sample is history (stored above).
      // A birth is the metric's current value whatever its time. Nor does it show what the store
      // refuses: another value at the live value's very time is a conflict there (the store
      // keeps the first), so the live view keeps the first too.
      const held = this.#live.get(info.tag);
      const current = held?.sample;
      if (steppedBack || (current !== undefined && !isBirth && timestamp < current.timestamp)) {
        this.#counts.outOfOrder++;
        // A live value received after the tag's newest stored row (or the one shown) but older by
        // its time: the edge clock stepped back ({@link #trace}). The one shown is not the current
        // value any more: uncertain, the step named, never shown good while a newer one was
        // received (amendments 19u and fix19s).
        this.#metricIssue(
          node,
          deviceId,
          info,
          "clock-step-back",
          `${topic}: a live value timestamped ${timeText(timestamp)} arrived after ${current !== undefined && timestamp < current.timestamp ? `one timestamped ${timeText(current.timestamp)}` : "a later row stored for the tag (a restated birth or a mark)"} (the edge node's clock stepped back): stored, not shown; the value shown is no longer current`,
          { at: 0, quality: quality("uncertain", undefined, QualityCodes.UncertainLastUsableValue) },
        );
        continue;
      }
      // (A mark of the host's own is not in the store: a value at its time is not a conflict.)
      if (
        current !== undefined &&
        timestamp === current.timestamp &&
        !this.#marks.has(held!) &&
        !sameReading(current, sample)
      )
        continue;
      const entry: SparkplugLiveMetric = {
        sample,
        groupId: node.groupId,
        edgeNodeId: node.edgeNodeId,
        ...(deviceId === undefined ? {} : { deviceId }),
        metric: info.name,
        datatype: info.datatype,
      };
      this.#live.set(info.tag, entry);
      live.push(entry);
    }
    this.#writer.push(samples, this.#mustStore);
    if (live.length > 0 && this.#bus.listenerCount("live-update") > 0)
      void this.#bus.publish("live-update", { metrics: live });
  }
}

/**
 * The birth's metric a data metric names: by its alias when it has one (and no other name than
 * the alias's), else by its name. The rule {@link SparkplugHost} decodes data by.
 */
function metricOf(birth: Birth, metric: SparkplugMetric): MetricInfo | undefined {
  if (metric.alias !== undefined) {
    const info = birth.byAlias.get(metric.alias);
    return info !== undefined && metric.name !== undefined && metric.name !== info.name ? undefined : info;
  }
  return metric.name === undefined ? undefined : birth.byName.get(metric.name);
}

/** Drops the released messages from the edge node's held list. */
function compactHeld(node: EdgeNodeState): void {
  node.held = node.held.filter((message) => !message.released);
  node.heldReleased = 0;
}

/** Whether every metric of a data message is one the birth announced (else it is refused whole). */
function decodesWhole(birth: Birth, payload: SparkplugPayload): boolean {
  return payload.metrics.every((metric) => metricOf(birth, metric) !== undefined);
}

/** Whether two samples of one tag at one time are the same reading (value and quality), as a store sees a re-delivery. */
function sameReading(a: Sample, b: Sample): boolean {
  return Object.is(a.value, b.value) && a.quality.severity === b.quality.severity && a.quality.code === b.quality.code;
}

/** A wire time in words: ISO 8601 when it is one, else the number. */
function timeText(timestamp: number): string {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? String(timestamp) : date.toISOString();
}

/** A value as a refusal shows it: strings quoted, cut to 64 characters. */
function shown(value: unknown): string {
  const text =
    typeof value === "string" ? JSON.stringify(value) : typeof value === "bigint" ? `${value}n` : String(value);
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

/** The {@link MESSAGE_NUMBER_METRIC} a DDATA carries (by its alias in the DBIRTH), if any. */
function messageNumberOf(payload: SparkplugPayload, birth: Birth): number | undefined {
  for (const metric of payload.metrics) {
    const name = metric.alias !== undefined ? birth.byAlias.get(metric.alias)?.name : metric.name;
    if (name !== MESSAGE_NUMBER_METRIC) continue;
    const value = metric.value;
    return typeof value === "number" || typeof value === "bigint" ? Number(value) : undefined;
  }
  return undefined;
}

/**
 * Whether a message on a group topic is one a client left on the broker (retained), refused
 * before anything is taken: Sparkplug forbids retaining births, data and deaths. The one rule for
 * the main session and the death watch, which see the same retain flag as both subscribe with
 * the same options (ADR 0043, amendment fix19t).
 */
function leftOnBroker(retained: boolean): boolean {
  return retained;
}

/**
 * The `bdSeq` of an NBIRTH or NDEATH, or why there is none usable: Sparkplug B 3.0 gives it
 * 0–255 (an integer metric, UInt64 in the specification, Int64 in Tahu's and Kiln's edge nodes),
 * [tck-id-payloads-nbirth-bdseq], [tck-id-payloads-ndeath-bdseq]. A value outside it is not
 * compared as a number: a host would pair a death with a birth the edge node never had.
 */
function bdSeqOf(payload: SparkplugPayload): number | string {
  const metric = payload.metrics.find((each) => each.name === BDSEQ);
  const value = metric?.value;
  if (metric === undefined)
    return "has no bdSeq metric ([tck-id-payloads-nbirth-bdseq], [tck-id-payloads-ndeath-bdseq])";
  if ((typeof value === "number" && Number.isInteger(value)) || typeof value === "bigint") {
    if (value >= 0 && value <= 255) return Number(value);
    return `has bdSeq ${String(value)}, outside 0–255 (Sparkplug B 3.0: bdSeq is 0–255)`;
  }
  return `has a bdSeq that is not an integer (${value === undefined || value === null ? "no value" : typeof value === "number" ? String(value) : typeof value}): Sparkplug B 3.0 bdSeq is an integer 0–255`;
}

/** One NDEATH message as both the main session and the watch read it: its bdSeq and payload timestamp. */
function deathKey(bdSeq: number, payload: SparkplugPayload): string {
  return `${bdSeq}@${String(payload.timestamp)}`;
}
