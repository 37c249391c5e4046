import { type Clock, KilnError } from "@kiln/core";
import { type TimerHandle } from "@kiln/core";
import { onAbort, reconnectDelay } from "@kiln/core/driver-kit";
import { answerDoubt } from "./modbus-answer-repeat";
import { gatewayMayAnswerLate, markLateException, modbusFailureOf, modbusTimeoutError } from "./modbus-failure";

/** Options of {@link ModbusRequestQueue}. */
export interface ModbusRequestQueueOptions {
  /** Source of time for timeouts and delays. */
  readonly clock: Clock;
  /** A request with no reply after this long rejects with `KILN_TIMEOUT` and frees the line. */
  readonly timeoutMs: number;
  /** Quiet time between the end of one request and the start of the next. @default 0 */
  readonly interRequestDelayMs?: number;
  /**
   * How long (ms) after its request's timeout a late answer may still arrive: the late bound of a request is
   * `timeoutMs + lateAnswerGuardMs` from when it went on the wire (twice the timeout with the driver's guard).
   * Every request that ended without its own trusted answer (timed out, refused an answer that did not fit
   * it, failed in a pipeline desync, a fence among them) enters a ledger of possibly late answers until
   * its send time plus that bound, and no request of the same shape (or without one) goes out before
   * that: a late answer arrives while nothing is asked that it would fit (Modbus RTU has no transaction id to
   * tell it apart; a TCP gateway may stamp it with the newest request's id). A request of another shape goes
   * at once: a late answer cannot pass as its answer, it is refused as a mismatch (and that request enters
   * the ledger in turn: its own answer may still come). What the shape holds is the caller's (the driver
   * leaves the unit out on TCP, where a gateway may stamp a late answer with another request's unit id).
   * @default 0
   */
  readonly lateAnswerGuardMs?: number;
  /** Requests on the wire at once (Modbus TCP matches answers by transaction id). @default 1 */
  readonly maxInFlight?: number;
  /**
   * Called when the answer stream is found possibly shifted (`aligned: false`, with the anomaly) and when a
   * fence has proved it aligned again (see {@link ModbusRequestOptions.fence}). A listener that throws is ignored.
   */
  readonly onAlignment?: (change: ModbusAlignmentChange) => void;
  /**
   * Called when a fence gets no answer within the late bound (whether or not the request it went before is still
   * waiting): the silence counts against the fence's unit and the link like any timeout. A listener that throws is
   * ignored.
   */
  readonly onFenceTimeout?: (error: unknown) => void;
  /**
   * A fence waits until no answer of its scope (see {@link ModbusRequestOptions.scope}) owed by a request (not by a
   * fence) is within its late bound: for a peer that ignores requests while it is busy sending a late answer (a
   * Modbus RTU device), so a fence is not sent only to be ignored and then refused the late answer as a mismatch;
   * its silence is then the unit's own (ADR 0041, amendment fix12w). Without it a fence goes as soon as the line is
   * free (a TCP gateway: the client drops older answers while the fence waits, see `ModbusClient.patientNext`).
   * @default false
   */
  readonly fenceAfterLateBound?: boolean;
  /**
   * The forget horizon of an answer owed by a device that answers out of order (see `#heldByOwed`): once a
   * request of its shape is due this long (ms) after the owed request went on the wire, the queue admits no more
   * requests and calls {@link ModbusRequestQueueOptions.onResync} as soon as nothing is on the wire (normally the
   * pause between reads; under reads back to back, right after the requests on the wire) instead of holding the
   * shape for ever. Only for a transport whose
   * answers are bound to their connection (Modbus TCP): once the caller has closed the connection and opened
   * another ({@link ModbusRequestQueue.newConnection}), no answer owed on the old one can come. Raised to the late
   * bound (`timeoutMs + lateAnswerGuardMs`) if lower. Without it (or without `onResync`): no horizon, a shape
   * stays held until its answer comes. ADR 0041, amendment fix12v.
   */
  readonly resyncAfterMs?: number;
  /**
   * Called (at most once per connection, after the current call stack, with nothing on the wire) when a held shape
   * passed its forget horizon, or when no fence could be built for a suspect scope and its backoff has passed (its
   * unsure shapes are forgotten then, see `#noFence`; ADR 0041, amendment fix12s): the caller fails the requests still queued (they were not admitted), closes the
   * connection and opens a new one, then calls {@link ModbusRequestQueue.newConnection}. A listener that throws is ignored.
   */
  readonly onResync?: (reason: string) => void;
  /**
   * Never sends two requests of one answer shape (see {@link ModbusRequestOptions.shape}) back to back while the
   * transaction ids are not proven ({@link ModbusRequestQueue.idsProven}): before a request whose shape is the
   * shape of the request sent just before it (less than its late bound, `timeoutMs + lateAnswerGuardMs`, ago),
   * a separator goes alone: a read built by the request's `fence` builder, of a shape that is neither that shape
   * nor one still possibly on its way. For a peer that stamps whatever answer it forwards with the newest
   * request's transaction id (a transparent gateway; a repeater retransmitting): one extra answer frame of the
   * right size taken by a request leaves that request's own answer to come next, and without a separator the next
   * request of the same shape takes it, good and wrong, and so on down the chain. With one, the answer lands on a
   * request of another size (a mismatch, or a drop the client reports) and the stream is resynchronised: at most
   * the extra frame itself is taken (nothing tells it apart). A request without a shape or a fence builder, or
   * whose builder finds no other shape, goes without one. ADR 0041, amendment fix12d.
   *
   * **Lifted per connection by an id proof** (ADR 0041, amendment fix12e): the first time a separator is due on a
   * connection, two reads of two other shapes, both built by the request's `fence` builder, go on the wire
   * together instead (written in the same tick, so a gateway has both before it can answer the first). A peer
   * stamping each answer with its own request's transaction id answers each with its own: the ids are proven for
   * this connection ({@link ModbusRequestQueue.shapesSeparated} false) and no separator goes any more on it. A
   * peer stamping the newest request's id gives the first one's answer the second one's id (refused, or dropped
   * and reported) and the first one none (a timeout): an anomaly like any, the answer stream is fenced, and
   * separators stay on for the connection. {@link ModbusRequestQueue.newConnection} and
   * {@link ModbusRequestQueue.forgetIdProof} forget the proof (a new connection may reach another peer).
   * @default false
   */
  readonly separateShapes?: boolean;
  /**
   * For a link whose answers carry no id (Modbus RTU): while an anomaly of the answer stream (a request abandoned
   * for its timeout, an answer that did not fit, a stray, a doubted answer) was seen less than
   * {@link SHIFT_WATCH_MS} ago, a separator (a read of another answer shape, built by the request's `fence` builder,
   * as for `separateShapes`) goes after {@link SAME_SHAPE_RUN} requests of one answer shape in a row. An answer
   * that comes after its request was abandoned (out of order, past its late bound), or a repeater's copy, lands on
   * a later request of its shape and is taken; that request's own answer then lands on the next one, and so on
   * while requests of the shape follow one another: the client's answer-time rule (ADR 0041 fix12c) ends such a
   * chain only while the host reads bytes in time. The separator takes the shifted answer (it does not fit) or its
   * own answer comes as a stray: at most {@link SAME_SHAPE_RUN} values of a shift are taken, whatever the timing.
   * Free on a plan whose block sizes change at least that often and on a line with no anomaly in the window. ADR
   * 0041, amendment fix12h.
   * @default false
   */
  readonly boundShapeRuns?: boolean;
  /**
   * Holds the transport's writes back until the returned release is called, so the id proof's two reads leave in
   * one write (one TCP segment) and a gateway has both before it can answer the first (ADR 0041 fix12f). Without it
   * each read is written on its own.
   */
  readonly holdWrites?: () => () => void;
}

/**
 * A shape held by an answer owed by a device that answers out of order (see {@link ModbusRequestQueue.held}).
 */
export interface ModbusHeldShape {
  /** The shape held (the caller's, e.g. `"holding-register/2"`: area and byte count). */
  readonly shape: string | undefined;
  /** The request whose answer is owed, in words. */
  readonly owedBy: string;
  /** When (clock ms) that request went on the wire. */
  readonly since: number;
  /**
   * When (clock ms) the link is resynchronised to release it (the forget horizon), if the queue has one;
   * undefined: held until the answer comes.
   */
  readonly releaseAt: number | undefined;
}

/**
 * What an answer that no request took answers, in the caller's shapes (see {@link ModbusRequestOptions.shape} and
 * {@link ModbusRequestOptions.exceptionShape}): it accounts only for an answer owed by a request of that shape.
 */
export interface ModbusAnswerShape {
  /** The shape of a data answer (or echo). */
  readonly shape?: string;
  /** The shape of an exception answer. */
  readonly exceptionShape?: string;
}

/** An answer possibly still on its way: its request ended without its own answer (see `#owed`). */
interface Owed {
  /** Its request's send time plus the late bound (clock ms). */
  readonly until: number;
  readonly shape: string | undefined;
  readonly exceptionShape: string | undefined;
  /** How many fences had proved the stream when it became owed (`#proofCount`). */
  readonly proofs: number;
  /** The connection it is owed on (`#connection`). */
  readonly connection: number;
  /** The scope of its request (see {@link ModbusRequestOptions.scope}). */
  readonly scope: string;
  /** Owed by a fence (a later fence does not wait for it, see `fenceAfterLateBound`). */
  readonly fence: boolean;
  /** When its request went on the wire (clock ms). */
  readonly sentAt: number;
  /** Its request, in words. */
  readonly what: string;
  /** The unit its request addressed (see {@link ModbusRequestOptions.unit}), if known. */
  readonly unit: number | undefined;
}

/** A change of {@link ModbusRequestQueue.alignment}. */
export interface ModbusAlignmentChange {
  /** `false`: an anomaly was seen and no answer is trusted before a fence's own answer; `true`: a fence proved it. */
  readonly aligned: boolean;
  /** What happened, in words (the anomaly, or the fence that proved the stream aligned). */
  readonly reason: string;
}

/**
 * A fence: a read whose answer has a shape no answer still possibly on its way has (see
 * {@link ModbusRequestOptions.fence}).
 */
export interface ModbusFence {
  /** Sends it; its result is ignored. */
  readonly run: () => Promise<unknown>;
  /** The shape of its answer (like {@link ModbusRequestOptions.shape}). */
  readonly shape: string;
  /** The shape of an exception answer to it (like {@link ModbusRequestOptions.exceptionShape}). */
  readonly exceptionShape?: string;
  /** The unit it reads at (like {@link ModbusRequestOptions.unit}). */
  readonly unit?: number;
  /** Its bytes on a serial line (like {@link ModbusRequestOptions.serialBytes}). */
  readonly serialBytes?: ModbusSerialBytes;
}

/**
 * How many bytes a request and its data answer take on a serial line, in Modbus RTU framing (unit id, PDU, CRC): a
 * read of 120 holding registers is `{ request: 8, answer: 245 }`. See {@link ModbusRequestOptions.serialBytes}.
 */
export interface ModbusSerialBytes {
  /** The request's bytes (8 for a read). */
  readonly request: number;
  /** Its data answer's bytes (5 plus the data bytes for a read). */
  readonly answer: number;
}

interface Entry {
  readonly operation: () => Promise<unknown>;
  readonly what: string;
  readonly signal: AbortSignal | undefined;
  /** Goes out only when no other request waits (a probe), so it never delays one that does. */
  readonly background: boolean;
  /** Builds the fence sent before it while the answer stream may be shifted (see {@link ModbusRequestOptions.fence}). */
  readonly fence: ModbusRequestOptions["fence"];
  /** The part of the answer stream its answer belongs to (see {@link ModbusRequestOptions.scope}). */
  readonly scope: string;
  /** This entry is a fence (the request it goes before, which it fails when it proves nothing). */
  readonly fenceFor?: Entry;
  /** The shape of its answer (unit, function, size); see {@link ModbusRequestOptions.shape}. */
  readonly shape: string | undefined;
  /** The shape of an exception answer to it; see {@link ModbusRequestOptions.exceptionShape}. */
  readonly exceptionShape?: string | undefined;
  /** The unit it addresses; see {@link ModbusRequestOptions.unit}. */
  readonly unit?: number | undefined;
  /** Its bytes on a serial line; see {@link ModbusRequestOptions.serialBytes}. */
  readonly serialBytes?: ModbusSerialBytes | undefined;
  /** Goes without a separator; see {@link ModbusRequestOptions.unseparated}. */
  readonly unseparated?: boolean;
  /** Sent while a late answer of its exception shape could still come (see `#strayExceptions`). */
  strayRisk?: boolean;
  /**
   * On the wire when an earlier request of its shape got an exception after which that request's own answer may still
   * come (see `#answerMayFollow`): a data answer it takes may be that one (see `#lateMayFollow`).
   */
  lateRisk?: boolean;
  /** Order in which it went on the wire (set by #execute). */
  sent?: number;
  /** When (clock ms) it went on the wire (set by #execute): its answer may come until this plus the late bound. */
  sentAt?: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  settled: boolean;
  /** Stops waiting on the caller's signal (set while the request is queued). */
  stopWaiting?: () => void;
  /** Frees the line while the request is in flight (set by #execute). */
  release?: () => void;
}

/** How {@link ModbusRequestQueue.run} treats one request. */
export interface ModbusRequestOptions {
  /** Send it only when no other request waits (a probe), so it never delays one that does. @default false */
  readonly background?: boolean;
  /**
   * What its answer looks like (e.g. `"1/3/250"`: unit, function code, byte count). While the device has
   * not proved that it stamps answers with the right transaction id, two requests of the same shape are
   * never on the wire together: an answer given the other one's id would fit it and be taken as its
   * value. Requests without a shape are treated as distinguishable from every other.
   */
  readonly shape?: string;
  /**
   * Builds a fence for it: a harmless read at the same unit (another size) whose answer has a shape that
   * `unsure(shape)` says no answer still possibly on its way has (undefined: none could be built). After an
   * anomaly (a timeout, an answer that did not fit, a request in flight when the connection dropped, an
   * answer that no request was waiting for: a duplicate, or one later than every bound), with the guard on
   * and the transaction ids unproven, the answer stream may be shifted, and time alone cannot prove that it
   * is not: no request with a fence goes out until a fence, sent alone, gets an answer that fits it. The
   * answers of one connection come back in the order of their requests (a serial line answers one at a
   * time), so once the fence's own answer has come no older one can come any more. Answers that come while
   * the fence waits and do not fit it are older ones: the client drops them (see
   * {@link ModbusRequestQueue.unasked}). When the fence gets no answer that fits it (a timeout, a mismatch),
   * the request it went before fails without being sent (`details.sent: false`) and the next request sends
   * another fence. Answers taken while the stream was not proven aligned (requests on the wire when the
   * anomaly was seen) are refused (`KILN_DEVICE_ERROR`, `details.unaligned: true`).
   */
  readonly fence?: (unsure: (shape: string) => boolean) => ModbusFence | undefined;
  /**
   * What an exception answer to it looks like (e.g. `"1/holding-register"`: unit and function; an exception
   * carries no size). With the late-answer guard on, an exception answer that came while a request of the same
   * exception shape was on the wire with it, or had timed out less than `lateAnswerGuardMs` before, or, on a
   * device seen answering out of order, whose answer is still owed (until it comes or the forget horizon
   * resynchronises the link), may be that request's late answer: it rejects with `KILN_DEVICE_ERROR`
   * `details.unprovenException` (the code) instead of the exception, so nothing is learned from it and it counts
   * against no unit (see docs/drivers/modbus.md, "Learned holes").
   */
  readonly exceptionShape?: string;
  /**
   * The part of the answer stream its answer belongs to, proven aligned on its own: an anomaly of a request makes
   * its scope suspect, a fence (sent at that scope by its `fence` builder) proves only its scope, and only requests
   * of a suspect scope wait for a fence. The driver gives each unit its own scope on Modbus RTU (each unit on a
   * multi-drop line is its own device answering in its own time, and the client takes an answer only from the unit
   * asked, so a late answer of one unit cannot pass for another's, and another unit's answer proves nothing about
   * it); on TCP every request has the default scope (a transparent gateway stamps any unit's late answer with the
   * newest request's header). Anomalies without a request (an answer nobody waited for) are of the default scope.
   * @default ""
   */
  readonly scope?: string;
  /**
   * The unit (Modbus unit id) the request addresses. Its answers' times are kept per unit, for telling a device's own
   * exception 4 or 6 from a gateway's late one (fix12k, adv12l). And it bounds a held shape's reach when the shape
   * leaves the unit out (TCP with the late-answer guard): on a device seen answering out of order, a shape held by a lost answer
   * of one unit that blocks a request of another unit, two late bounds after the lost request was sent, makes the
   * queue resynchronise the link in the next pause between reads (see {@link ModbusRequestQueueOptions.onResync})
   * instead of at the forget horizon, so the unit that lost the answer costs the others one reconnect, not
   * `resyncAfterMs` of refused reads (ADR 0041, amendment fix12aa).
   * Undefined: the hold lasts until the answer comes or the horizon, as before, and the answer times are the scope's.
   */
  readonly unit?: number;
  /**
   * How many bytes the request and its data answer take on a serial line (RTU framing). Behind a gateway to a serial
   * line most of a large answer's time is its transfer (120 registers at 9600 baud: about 255 ms, one register: about
   * 7 ms), so the unit's usual answer time that tells a device's own exception 4 or 6 from a gateway's late one is
   * judged per byte (ADR 0041, amendment fix12n): a short read's 4 or 6 is compared with what a short exchange
   * usually takes, not with the unit's large blocks. Undefined (on this request or on one of the unit's timed
   * answers): the unit's answers are judged by their median time alone.
   */
  readonly serialBytes?: ModbusSerialBytes;
  /**
   * Goes right after a request of its shape without a separator (see
   * {@link ModbusRequestQueueOptions.separateShapes}): for a request whose answer is checked against the one before
   * (the second read of a bit write's read-modify-write: a shifted answer makes the two disagree). @default false
   */
  readonly unseparated?: boolean;
}

/**
 * Answers to requests of different shapes that came back with their own transaction id while a request
 * sent later was in flight, after which requests of the same shape may be pipelined too.
 */
export const TRANSACTION_ID_PROOFS = 3;

/** Expired owed answers kept as evidence of an out-of-order device (see `ModbusRequestQueue.#lateEvidence`). */
const EXPIRED_OWED = 32;
/**
 * Answers taken in a row, each with the answer stream proven aligned and no answer owed, after which a device seen
 * answering out of order is no longer taken to (ADR 0041, amendment fix12z): the classification releases no hold
 * (nothing is owed), it only stops holding the next lost answer's shape for every unit until the forget horizon.
 */
const OUT_OF_ORDER_DECAY_ANSWERS = 20;

/**
 * Late bounds (`timeoutMs + lateAnswerGuardMs`) after its request's send past which an owed answer whose shape blocks
 * another unit's request makes the queue resynchronise the link in the next pause between reads, instead of at the
 * forget horizon (ADR 0041, amendment fix12aa). Before it, the answer may only be late (a slow unit): it frees its
 * shape when it comes, and no reconnect is spent on it.
 */
const OTHER_UNIT_RESYNC_BOUNDS = 2;

/**
 * On a connection whose id proof passed (one request on the wire at a time), and on a link whose answers carry no
 * id while it is watched (`boundShapeRuns`, {@link SHIFT_WATCH_MS}; ADR 0041 fix12h), a separator still goes after
 * this many requests of one answer shape in a row (ADR 0041, amendment fix12g). A peer that passed the proof and then
 * shifts its answer stream by one (an extra frame, each later answer stamped with the newest request's id) gives
 * every later request the answer of the one before, with the right id and the right size: nothing else shows it
 * while requests follow one another faster than the peer answers (a chain of 49 wrong good values in 6 back-to-back
 * scans was seen). The separator gets an answer of the wrong size or a stray, which loses the proof: at most this
 * many values of a shift are taken. Free on a plan whose block sizes change at least this often.
 */
const SAME_SHAPE_RUN = 8;

/**
 * How long (ms) after the last anomaly of the answer stream runs of one shape stay bounded on a link whose answers
 * carry no id (`boundShapeRuns`, ADR 0041 fix12h). A request's timeout is such an anomaly, so an answer that comes up
 * to this long after its request was abandoned (60 times the default 1 s request timeout; the late answers seen on
 * real lines are a PLC cycle or a radio modem's buffer, well under that) starts a chain of at most
 * {@link SAME_SHAPE_RUN} values. Each new anomaly (a separator that caught a shift is one) starts the window again, so
 * a line that keeps showing them (a dead unit timing out every scan, a repeater) stays bounded; a healthy line pays
 * nothing once the window has passed. A time window, not "the rest of the connection": a serial port stays open for
 * months, and one timeout at start-up would otherwise cost a request per {@link SAME_SHAPE_RUN} for good.
 */
const SHIFT_WATCH_MS = 60_000;

/**
 * Exception 4 or 6 in its scope's usual time is the device's own final answer (ADR 0041 fix12k): it came within twice
 * the median time (ms) the scope's last {@link SERVICE_TIMES} data answers took, plus this slack. A queued gateway
 * answers its serial timeout with 4 or 6 only after that timeout, which a working gateway sets well above its devices'
 * answer time; a 4 or 6 later than this (or before {@link SERVICE_TIMES_NEEDED} answers were timed) is, for the answer
 * stream, a timeout: the device's own answer may still come.
 */
const USUAL_TIME_SLACK_MS = 10;
/** How many data answers' times per scope the usual time is judged from (see {@link USUAL_TIME_SLACK_MS}). */
const SERVICE_TIMES = 16;
/** Data answers a scope needs timed before a 4 or 6 can be its device's own (see {@link USUAL_TIME_SLACK_MS}). */
const SERVICE_TIMES_NEEDED = 4;
/** Bytes of an exception answer on a serial line (RTU: unit id, function with its high bit set, code, CRC). */
const EXCEPTION_SERIAL_BYTES = 5;

/** How long (ms) a data answer took (see `ModbusRequestQueue.#serviceTimes`), and its exchange's serial bytes. */
interface ServiceTime {
  readonly ms: number;
  /** Request and answer bytes on a serial line (see {@link ModbusRequestOptions.serialBytes}); undefined: not known. */
  readonly bytes: number | undefined;
}

/** The longest wait (ms) before the answer stream is resynchronised for want of a fence (see `#noFence`). */
const NO_FENCE_MAX_BACKOFF_MS = 60_000;

function abortError(what: string, signal: AbortSignal): KilnError {
  return new KilnError("KILN_ABORTED", `${what} was aborted.`, { cause: signal.reason });
}

/**
 * Runs Modbus requests on one connection, `maxInFlight` at a time (default one). modbus-serial has no queue
 * and no default timeout, and serial lines and many gateways cannot take a second request before the first
 * is answered, so every request waits its turn, gets `timeoutMs` to complete, and waits for
 * `interRequestDelayMs` of quiet time after the last completed request. {@link ModbusRequestQueue.fail}
 * rejects the requests in flight and every queued one at once (connection lost, driver closed).
 */
export class ModbusRequestQueue {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #delayMs: number;
  #maxInFlight: number;
  readonly #queue: Entry[] = [];
  readonly #inFlight = new Set<Entry>();
  #running = false;
  #lastEnd = Number.NEGATIVE_INFINITY;
  readonly #guardMs: number;
  /**
   * The ledger of possibly late answers: until when (clock ms) an answer to a request of each shape (undefined:
   * a shapeless request, which could fit any) that ended without its own trusted answer may still arrive
   * (its send time plus the late bound, `timeoutMs + lateAnswerGuardMs`). Requests of that shape wait.
   */
  readonly #quiet = new Map<string | undefined, number>();
  /** Until when (ms) a late exception answer to a request of each exception shape that failed may still come. */
  readonly #strayExceptions = new Map<string, number>();
  readonly #onAlignment: ((change: ModbusAlignmentChange) => void) | undefined;
  readonly #onFenceTimeout: ((error: unknown) => void) | undefined;
  readonly #fenceAfterLateBound: boolean;
  readonly #holdWrites: (() => () => void) | undefined;
  /** See {@link ModbusRequestQueueOptions.separateShapes}. */
  readonly #separateShapes: boolean;
  /** See {@link ModbusRequestQueueOptions.boundShapeRuns}. */
  readonly #boundShapeRuns: boolean;
  /** When (clock ms) the answer stream's last anomaly was seen (see `boundShapeRuns`); none yet: -Infinity. */
  #lastAnomalyAt = Number.NEGATIVE_INFINITY;
  /** The shape of the request sent last and when it went on the wire (see `separateShapes`). */
  #lastSent: { readonly shape: string | undefined; readonly at: number } | undefined;
  /** Requests of `#lastSent`'s shape sent in a row, it included (see {@link SAME_SHAPE_RUN}). */
  #sameShapeRun = 0;
  /** A separator (see `separateShapes`) is on the wire: it goes alone. */
  #separating = false;
  /** Separators sent (see {@link ModbusRequestQueue.separators}). */
  #separators = 0;
  /** This connection's id proof (see {@link ModbusRequestQueue.idProof}); a proof in flight is `"sent"`. */
  #idProof: "untried" | "sent" | "passed" | "failed" = "untried";
  /**
   * This connection showed a sign of a shifted answer stream (see `#distrustIds`): ids are not trusted on it any
   * more, whatever proof passed or comes (ADR 0041 fix12f).
   */
  #idsDistrusted = false;
  /**
   * Scopes with an anomaly since their last proof (see {@link ModbusRequestOptions.fence} and
   * {@link ModbusRequestOptions.scope}); the stream is aligned when there is none.
   */
  readonly #unaligned = new Set<string>();
  #alignmentReason = "no anomaly seen";
  /** The `#sent` number of the last anomaly: requests sent before it and answered after it are not trusted. */
  #anomalyAt = 0;
  /**
   * Answers possibly still on their way, one per request that ended without its own answer, oldest bound first,
   * less one of the same shape per answer that came and no request took (unasked, or refused as not fitting).
   * While the device answers in order they count until their late bound; once it has shown that it does not
   * (`#outOfOrder`), until the answer has come: time proves nothing about an answer that overtaking ones do not
   * hold back. When a fence's proof finds none owed, every late answer came and the ledger is cleared early.
   */
  readonly #owed: Owed[] = [];
  /**
   * Owed answers whose late bound passed before the device was seen answering out of order, oldest first, at most
   * {@link EXPIRED_OWED}: evidence only (see `#lateEvidence`), never a hold.
   */
  readonly #expired: Owed[] = [];
  /** Fences that proved the stream aligned so far. */
  #proofCount = 0;
  /**
   * An answer owed before a fence's own answer came after it: the device answers out of order (a gateway with
   * several serial lines, or one answering each request after its own delay), so a fence proves nothing about
   * the answers still owed and an owed answer frees its shape only when it has come (see `#heldByOwed`).
   */
  #outOfOrder = false;
  /** Answers taken in a row while `#outOfOrder`, aligned and with nothing owed (see {@link OUT_OF_ORDER_DECAY_ANSWERS}). */
  #cleanAnswers = 0;
  /**
   * Shapes (exception shapes prefixed `!`) of the requests sent since the answer stream was last proven aligned,
   * with how many of each (one that failed as not connected was never on the wire and is taken back).
   */
  readonly #unsure = new Map<string, Map<string | undefined, number>>();
  /** A fence is on the wire: nothing else goes. */
  #fencing = false;
  /**
   * Per scope, the fence of the last request answered that has one (it reads like a read that answers), until a fence is
   * sent in the pause after an anomaly (see `#pump`): at most one such fence per answer, so a dead peer is not
   * asked in a loop while nothing waits, and none reads like a request that never got an answer.
   */
  readonly #idleFence = new Map<string, NonNullable<ModbusRequestOptions["fence"]>>();
  /**
   * Scopes whose last anomaly was a request's silence: a fence may go in the pause. After an answer that did not fit,
   * the rest of it may still be arriving (a cut frame, a resend), so the fence waits for the next request.
   */
  readonly #silenceOnly = new Set<string>();
  /** No fence before this (clock ms): after a fence's mismatch, its own answer gets time to arrive first. */
  #fenceNotBefore = Number.NEGATIVE_INFINITY;
  #anomalies = 0;
  /**
   * Per scope and unit ({@link serviceKey}), how long (ms) its last {@link SERVICE_TIMES} data answers took from when the peer could start on them
   * (their send, or the answer before them if later: a queued gateway serves one at a time); this connection only.
   */
  readonly #serviceTimes = new Map<string, ServiceTime[]>();
  /** When (clock ms) the last answer (data or exception) came on this connection. */
  #lastAnswerAt = Number.NEGATIVE_INFINITY;
  /** Answers or bytes that came with no request to take them (see `unasked`, `strayOnLine`). */
  #strays = 0;
  #sent = 0;
  #proofs = 0;
  /** Holders keeping background requests back (reads in progress; see holdBackground). */
  #holds = 0;
  /** The connection requests go on now (see newConnection). */
  #connection = 0;
  readonly #resyncAfterMs: number | undefined;
  readonly #onResync: ((reason: string) => void) | undefined;
  /** A resync was asked on this connection (at most one per connection). */
  #resyncAsked = false;
  /** A resync was asked and the caller has not failed the queue or opened a new connection since: admit nothing. */
  #resyncPending = false;
  /** Why a resync is due (a held shape passed its forget horizon), until it is asked (see `#resyncIfIdle`). */
  #resyncReason: string | undefined;
  /**
   * Why a resync is wanted in the next pause between reads (a held shape blocked another unit's request, see
   * `#heldError`): unlike `#resyncReason` it admits requests meanwhile, so the rest of the read goes on.
   */
  #idleResyncReason: string | undefined;
  /**
   * Scopes for which no fence of a distinct shape could be built (every size inside the reads that answered has an
   * unsure shape), with when their unsure shapes are forgotten (see `#unstick`): without it such a scope stayed
   * suspect for good, every request failing unsent (adv12s H2). Backoff: the late bound, doubled per time in a row
   * without a proof in between (`#noFenceTries`), at most {@link NO_FENCE_MAX_BACKOFF_MS}.
   */
  readonly #noFence = new Map<string, { readonly tries: number; readonly resyncAt: number }>();
  /** Per scope, resynchronisations for want of a fence since its last proof (see `#noFence`). */
  readonly #noFenceTries = new Map<string, number>();
  /** Pumps the queue when the first `#noFence` backoff ends, so the resync goes in the pause between reads. */
  #noFenceTimer: TimerHandle | undefined;

  constructor(options: ModbusRequestQueueOptions) {
    this.#clock = options.clock;
    this.#timeoutMs = options.timeoutMs;
    this.#delayMs = options.interRequestDelayMs ?? 0;
    this.#maxInFlight = options.maxInFlight ?? 1;
    this.#guardMs = options.lateAnswerGuardMs ?? 0;
    this.#onAlignment = options.onAlignment;
    this.#onFenceTimeout = options.onFenceTimeout;
    this.#fenceAfterLateBound = options.fenceAfterLateBound ?? false;
    this.#holdWrites = options.holdWrites;
    this.#separateShapes = options.separateShapes ?? false;
    this.#boundShapeRuns = options.boundShapeRuns ?? false;
    this.#resyncAfterMs =
      options.resyncAfterMs === undefined
        ? undefined
        : Math.max(options.resyncAfterMs, this.#timeoutMs + this.#guardMs);
    this.#onResync = options.onResync;
  }

  /**
   * Requests go on a new connection from now on. Answers owed on the old one still count until their late
   * bound (a gateway's serial line outlives its TCP connection, and a device answering in order may send them
   * on the new one), but they no longer hold their shape past it: a device that answers out of order routes
   * each answer to its own request's connection (it keeps several open at once), and that one is closed.
   * Only for a transport whose answers are bound to their connection (Modbus TCP; not a serial port).
   */
  newConnection(): void {
    this.#connection++;
    // Ids proven on the old connection say nothing about the peer behind this one (fix12e).
    this.#idProof = "untried";
    this.#idsDistrusted = false;
    // The peer behind the address may have changed, and with it the usual answer time (fix12k).
    this.#serviceTimes.clear();
    this.#lastAnswerAt = Number.NEGATIVE_INFINITY;
    // The out-of-order classification belongs to a connection, like the holds it causes (fix12z): a new one
    // starts where the driver started, with the time bound, until it shows out-of-order answers itself. Not after a
    // resynchronisation this queue asked for: it was asked because the device answers out of order, and a new
    // connection starting unclassified would take a slow unit's answer later than the late bound for another
    // request's, on every resync (fix12aa); the classification still ends by its decay.
    if (!this.#resyncAsked) {
      this.#outOfOrder = false;
      this.#cleanAnswers = 0;
    }
    this.#resyncAsked = false;
    this.#resyncPending = false;
    this.#resyncReason = undefined;
    this.#idleResyncReason = undefined;
    void this.#pump();
  }

  /**
   * Asks the caller to resynchronise the link (see {@link ModbusRequestQueueOptions.onResync}) when one is due and
   * nothing is on the wire. From the moment it is due no request is admitted (see `#pump`), so in the pause between
   * scans nothing is queued and the reconnect fails no read; a read in progress (reads back to back, or several scan
   * groups overlapping) has its queued requests failed by the caller's reconnect, retryable, instead of keeping the
   * shape held for ever (ADR 0041, amendment fix12y).
   */
  #resyncIfIdle(): void {
    const onResync = this.#onResync;
    if (onResync === undefined || this.#resyncAsked) return;
    // Nothing on the wire is enough: requests queued meanwhile were not admitted (`#resyncDue`), so a driver whose
    // reads run back to back, or overlap, resynchronises too (adv12z F3); the caller fails them, retryable.
    if (this.#inFlight.size > 0 || this.#fencing) return;
    // A resync for a held shape that blocked another unit waits for a true pause (no read in progress, nothing
    // queued), so it fails no request; reads back to back leave it to the forget horizon.
    const idle = this.#queue.length === 0 && this.#holds === 0;
    const reason = this.#resyncReason ?? (idle ? this.#idleResyncReason : undefined);
    if (reason === undefined) return;
    this.#resyncAsked = true;
    this.#resyncPending = true;
    this.#resyncReason = undefined;
    this.#idleResyncReason = undefined;
    queueMicrotask(() => {
      try {
        onResync(reason);
      } catch {
        // a listener's failure is its own
      }
    });
  }

  /**
   * No request is admitted: a resync is due (a held shape passed its forget horizon, see `#heldError`), or was asked
   * and the caller has neither failed the queue (`fail`, its reconnect) nor opened a new connection yet.
   */
  #resyncDue(): boolean {
    if (this.#onResync === undefined) return false;
    return (this.#resyncReason !== undefined && !this.#resyncAsked) || this.#resyncPending;
  }

  /**
   * The shapes held now by answers owed by a device that answers out of order (past their late bound, on the
   * current connection), oldest first: requests of these shapes fail unsent until the answer comes or the forget
   * horizon resynchronises the link. Empty while the device has not been seen answering out of order.
   */
  get held(): ModbusHeldShape[] {
    if (!this.#outOfOrder) return [];
    this.#owedCount();
    const now = this.#clock.now();
    const seen = new Set<string | undefined>();
    const held: ModbusHeldShape[] = [];
    for (const owed of [...this.#owed].sort((a, b) => a.sentAt - b.sentAt)) {
      if (owed.until > now || owed.connection !== this.#connection || seen.has(owed.shape)) continue;
      seen.add(owed.shape);
      held.push({ shape: owed.shape, owedBy: owed.what, since: owed.sentAt, releaseAt: this.#releaseAt(owed) });
    }
    return held;
  }

  /** When the forget horizon releases `owed`'s shape (undefined: never, the queue has no horizon). */
  #releaseAt(owed: Owed): number | undefined {
    if (this.#resyncAfterMs === undefined || this.#onResync === undefined) return undefined;
    return owed.sentAt + this.#resyncAfterMs;
  }

  /**
   * Whether the answer stream is proven aligned (no anomaly since the last fence's own answer), why not, and
   * how many anomalies and stray answers (`strays`) were seen. Kept across reconnects: a gateway's serial line outlives its TCP connection.
   */
  get alignment(): {
    readonly aligned: boolean;
    readonly reason: string;
    readonly anomalies: number;
    readonly strays: number;
    readonly resyncAt?: number;
  } {
    const aligned = this.#unaligned.size === 0;
    let resyncAt: number | undefined;
    for (const stuck of this.#noFence.values()) resyncAt = Math.min(resyncAt ?? stuck.resyncAt, stuck.resyncAt);
    return {
      aligned,
      reason: this.#alignmentReason,
      anomalies: this.#anomalies,
      strays: this.#strays,
      ...(aligned || resyncAt === undefined ? {} : { resyncAt }),
    };
  }

  /**
   * The scopes (see {@link ModbusRequestOptions.scope}; `""` for requests without one) with an anomaly since their
   * last fence's proof: not empty exactly while {@link ModbusRequestQueue.alignment} says `aligned: false`.
   */
  get unalignedScopes(): readonly string[] {
    return [...this.#unaligned];
  }

  /**
   * An answer came that no request on the wire took (the client dropped it: its transaction id belongs to
   * no request waiting, or it did not fit the fence waiting for its own). It accounts for an answer owed by
   * an earlier request of its shape (`answer`; of any shape when unknown); when none was owed it is an anomaly in itself (a duplicate, or an answer later than
   * every bound, possibly after a request of its shape took the wrong one).
   */
  unasked(reason: string, answer?: ModbusAnswerShape): void {
    this.#strays++;
    if (this.#pay(answer)) return;
    this.#distrustIds();
    // Dropped rather than taken by the request on the wire: that one's answer is not suspect for it.
    this.#anomaly(
      `an answer came that no request was waiting for (${reason}): a duplicate or a very late answer`,
      false,
    );
  }

  /**
   * Bytes came on a line whose answers carry no id (Modbus RTU) while no request of theirs waited: a repeated
   * or late answer of the unit whose scope is `scope`, or noise (`scope` undefined). Counted; a frame makes its
   * scope suspect, so no request of it goes before a fence's own answer (one clean exchange proves nothing: a
   * repeat may come again). It pays no owed answer: a repeat is no answer owed, and releasing a hold for it
   * would let the late answer it stood for be taken. Noise is left to the client's own resynchronisation.
   */
  strayOnLine(reason: string, scope?: string): void {
    this.#strays++;
    if (scope !== undefined) this.#anomaly(reason, false, scope);
  }

  /**
   * An answer came with the transaction id of a request on the wire and was refused as not fitting it (that
   * request fails as a mismatch, which is the anomaly): it accounts for an answer owed by an earlier request
   * of its shape, if one is.
   */
  unfit(answer: ModbusAnswerShape): void {
    this.#distrustIds();
    this.#pay(answer);
  }

  /**
   * Takes the owed answer `answer` accounts for off `#owed` (the oldest of its shape; any one when its shape is
   * unknown); false when none is owed. One owed since before a fence's proof shows that the device answers
   * out of order.
   */
  #pay(answer: ModbusAnswerShape | undefined): boolean {
    if (this.#owedCount() === 0) return this.#lateEvidence(answer);
    if (answer !== undefined && answer.shape === undefined && answer.exceptionShape !== undefined) {
      // An exception carries no size: it is the answer of one of the owed requests of its function, but not of
      // which. It pays an owed answer only when that one is the only one it can be; else every owed answer keeps
      // holding its shape (until it comes, its late bound, or the forget horizon): paying the oldest released the
      // hold of another request's data answer, which the next request of that shape then took (adv12s H1).
      const candidates = this.#owed.filter(
        (owed) => owed.exceptionShape === undefined || owed.exceptionShape === answer.exceptionShape,
      );
      if (candidates.length === 0) return this.#lateEvidence(answer);
      if (candidates.every((owed) => owed.proofs < this.#proofCount)) this.#outOfOrderIf(answer);
      if (candidates.length === 1) this.#owed.splice(this.#owed.indexOf(candidates[0]!), 1);
      return true;
    }
    const index =
      answer === undefined
        ? 0
        : this.#owed.findIndex(
            (owed) => answer.shape !== undefined && (owed.shape === undefined || owed.shape === answer.shape),
          );
    if (index < 0) return this.#lateEvidence(answer);
    const [paid] = this.#owed.splice(index, 1);
    if (paid!.proofs < this.#proofCount) this.#outOfOrderIf(answer);
    return true;
  }

  /**
   * An answer nobody took that no owed answer accounts for: if it is one whose late bound passed (`#expired`) and
   * that was owed before a fence's proof, the device answers out of order (an in-order device sends every older
   * answer before a fence's own). Marks it, so owed answers hold their shape from now on, sooner than waiting for
   * an answer within its bound to show it (adv12s M2). Always false: the answer is still an anomaly (it came past
   * every bound, and may have been preceded by one taken by another request).
   */
  #lateEvidence(answer: ModbusAnswerShape | undefined): false {
    if (answer === undefined || this.#outOfOrder) return false;
    const index = this.#expired.findIndex((owed) =>
      answer.shape !== undefined
        ? owed.shape === undefined || owed.shape === answer.shape
        : answer.exceptionShape !== undefined &&
          (owed.exceptionShape === undefined || owed.exceptionShape === answer.exceptionShape),
    );
    if (index < 0) return false;
    const [late] = this.#expired.splice(index, 1);
    if (late!.proofs < this.#proofCount) this.#outOfOrderIf(answer);
    return false;
  }

  /**
   * An answer nobody took came that an answer owed since before a fence's proof accounts for: evidence that the
   * device answers out of order, unless it may be the answer of a request of its shape sent since that proof
   * (`#unsure`; its own, stamped with another request's transaction id by a transparent gateway, or refused by
   * the request whose id it came with). An in-order gateway answering a pipelined or just-sent request that way
   * was classified out of order for good before (review adv12 MEDIUM 3).
   */
  #outOfOrderIf(answer: ModbusAnswerShape | undefined): void {
    if (this.#sentUnsure(undefined)) return;
    if (answer === undefined) {
      // Shapeless (a dropped answer of any request): evidence only when no request went since the proof.
      for (const unsure of this.#unsure.values()) if (unsure.size > 0) return;
      this.#outOfOrder = true;
      this.#cleanAnswers = 0;
      this.#distrustIds();
      return;
    }
    if (answer.shape !== undefined ? this.#sentUnsure(answer.shape) : this.#sentUnsure(`!${answer.exceptionShape}`))
      return;
    this.#outOfOrder = true;
    this.#cleanAnswers = 0;
    this.#distrustIds();
  }

  /**
   * A request took its own answer (not a fence's, not a possible repeat). On a device seen answering out of order,
   * {@link OUT_OF_ORDER_DECAY_ANSWERS} such answers in a row, each with the stream aligned and nothing owed, end
   * the classification: with nothing owed no hold is released by it, and a later lost answer holds its shape only
   * until its late bound again (the state before the first out-of-order answer). Before, one overtaken late answer
   * classified the device for the driver's life, and each later lost answer held its shape, for every unit, until
   * the forget horizon (adv fix12z M1).
   */
  #answeredInOrder(): void {
    if (!this.#outOfOrder) return;
    if (this.#unaligned.size > 0 || this.#owedCount() > 0) {
      this.#cleanAnswers = 0;
      return;
    }
    if (++this.#cleanAnswers < OUT_OF_ORDER_DECAY_ANSWERS) return;
    this.#outOfOrder = false;
    this.#cleanAnswers = 0;
  }

  #anomaly(reason: string, onTheWireSuspect = true, scope = ""): void {
    if (this.#guardMs <= 0 || this.idsProven) return;
    this.#cleanAnswers = 0;
    this.#anomalies++;
    this.#lastAnomalyAt = this.#clock.now();
    if (onTheWireSuspect) this.#anomalyAt = this.#sent;
    this.#alignmentReason = reason;
    this.#silenceOnly.delete(scope);
    const wasAligned = this.#unaligned.size === 0;
    this.#unaligned.add(scope);
    if (wasAligned) this.#notify({ aligned: false, reason });
  }

  /** A fence got its own answer: every older answer has come or never will. */
  #prove(fence: Entry): void {
    this.#proofCount++;
    // Owed answers not come yet may still come out of order (a gateway with several serial lines): the ledger
    // keeps their shapes until their bound.
    if (this.#owedCount() === 0) this.#quiet.clear();
    this.#unsure.delete(fence.scope);
    this.#noFence.delete(fence.scope);
    this.#noFenceTries.delete(fence.scope);
    if (!this.#unaligned.delete(fence.scope) || this.#unaligned.size > 0) return;
    this.#alignmentReason = `${fence.what} got its own answer`;
    this.#notify({ aligned: true, reason: this.#alignmentReason });
  }

  #countUnsure(entry: Entry, delta: 1 | -1): void {
    if (this.#guardMs <= 0) return;
    const shapes = entry.exceptionShape === undefined ? [entry.shape] : [entry.shape, `!${entry.exceptionShape}`];
    let unsure = this.#unsure.get(entry.scope);
    if (unsure === undefined) this.#unsure.set(entry.scope, (unsure = new Map()));
    for (const shape of shapes) {
      const count = (unsure.get(shape) ?? 0) + delta;
      if (count > 0) unsure.set(shape, count);
      else unsure.delete(shape);
    }
  }

  /** Whether a request of `shape` (an exception shape prefixed `!`) was sent since its scope was last proven. */
  #sentUnsure(shape: string | undefined): boolean {
    for (const unsure of this.#unsure.values()) if (unsure.has(shape)) return true;
    return false;
  }

  /**
   * Whether an exception answering the fence `fence` may be another request's: a request of its exception shape
   * (or a shapeless one) was sent since its scope was last proven, other than the fence itself (it is sent alone
   * and counted once), or an answer of one is still owed (`#owed`: within its late bound, or on a device seen
   * answering out of order until it comes). Counting the fence's own shape made every refused fence prove nothing,
   * so a fence refused once stayed refused for good (adv12s H2).
   */
  #strayExceptionBesides(fence: Entry): boolean {
    const shape = `!${fence.exceptionShape}`;
    let sent = 0;
    for (const unsure of this.#unsure.values()) sent += (unsure.get(shape) ?? 0) + (unsure.get(undefined) ?? 0);
    if (fence.exceptionShape === undefined || sent > 1) return true;
    this.#owedCount();
    return this.#owed.some((owed) => owed.exceptionShape === undefined || owed.exceptionShape === fence.exceptionShape);
  }

  /**
   * Answers owed: whose late bound has not passed, or, once the device answers out of order, every one not come
   * that is owed on the current connection (see newConnection).
   */
  #owedCount(): number {
    const now = this.#clock.now();
    for (let index = this.#owed.length - 1; index >= 0; index--) {
      const owed = this.#owed[index]!;
      if (owed.until > now || (this.#outOfOrder && owed.connection === this.#connection)) continue;
      this.#owed.splice(index, 1);
      // Kept as evidence only (never holds a shape): see `#lateEvidence`.
      if (!this.#outOfOrder) this.#expired.push(owed);
      if (this.#expired.length > EXPIRED_OWED) this.#expired.shift();
    }
    return this.#owed.length;
  }

  /**
   * Whether a request of `shape` may not go because an answer of its shape is still owed past its late bound by a
   * device that answers out of order: it could come at any time, stamped with that request's transaction id
   * (a gateway stamping the newest), and nothing would tell the two apart.
   */
  #heldByOwed(shape: string | undefined): boolean {
    return this.#heldBy(shape) !== undefined;
  }

  /** The oldest owed answer holding `shape` (see `#heldByOwed`), if one does. */
  #heldBy(shape: string | undefined): Owed | undefined {
    if (!this.#outOfOrder) return undefined;
    this.#owedCount();
    const now = this.#clock.now();
    let oldest: Owed | undefined;
    for (const owed of this.#owed) {
      if (owed.until > now || owed.connection !== this.#connection) continue;
      if (shape !== undefined && owed.shape !== undefined && owed.shape !== shape) continue;
      if (oldest === undefined || owed.sentAt < oldest.sentAt) oldest = owed;
    }
    return oldest;
  }

  /**
   * Why `head` is not sent: `owed` holds its shape. Past the forget horizon with nothing on the wire, asks the
   * caller to resynchronise the link (once per connection).
   */
  #heldError(head: Entry, owed: Owed): KilnError {
    const now = this.#clock.now();
    const releaseAt = this.#releaseAt(owed);
    const shape = owed.shape === undefined ? "any shape" : `shape ${owed.shape}`;
    let release: string;
    // Another unit's request blocked: the shape leaves the unit out (TCP with the guard), so one unit's lost answer
    // would refuse every unit's reads of its size until the horizon. Resynchronising proves the release at once (no
    // answer of a closed connection can come on the new one); the unit that owes the answer waits for the horizon,
    // so an answer that is only late frees its shape without a reconnect (ADR 0041, amendment fix12aa).
    const otherUnit = head.unit !== undefined && owed.unit !== undefined && head.unit !== owed.unit;
    if (releaseAt === undefined) release = "held until that answer comes (no forget horizon)";
    else if (otherUnit && releaseAt > now && !this.#resyncAsked) {
      const earlyAt = owed.sentAt + OTHER_UNIT_RESYNC_BOUNDS * (this.#timeoutMs + this.#guardMs);
      if (now >= earlyAt) {
        release = `it blocks a request to unit ${head.unit}, not only unit ${owed.unit}'s, so the link is resynchronised in the next pause between reads to release it (closing and reopening the connection, after which no answer of the old one can come), at the latest at ${new Date(releaseAt).toISOString()}`;
        this.#idleResyncReason ??= `resynchronising the link: the answer to ${owed.what} (${shape}), owed by a device that answers out of order since ${new Date(owed.sentAt).toISOString()}, has not come, and its shape blocks unit ${head.unit}'s requests`;
      } else
        release = `released when it comes; as it blocks a request to unit ${head.unit}, not only unit ${owed.unit}'s, the link is resynchronised in the first pause between reads after ${new Date(earlyAt).toISOString()} if it has not come by then (at the latest at ${new Date(releaseAt).toISOString()})`;
    } else if (releaseAt > now)
      release = `released when it comes, or at ${new Date(releaseAt).toISOString()} by resynchronising the link (closing and reopening the connection, after which no answer of the old one can come)`;
    else {
      release = `its forget horizon passed at ${new Date(releaseAt).toISOString()}: the link is resynchronised to release it as soon as no request is on the wire (no other request is sent before)`;
      this.#resyncReason ??= `resynchronising the link: the answer to ${owed.what} (${shape}), owed by a device that answers out of order since ${new Date(owed.sentAt).toISOString()}, never came`;
    }
    return notSent(
      head.what,
      `${shape} is held: the answer to ${owed.what}, sent at ${new Date(owed.sentAt).toISOString()}, has not come, and this device answers out of order (an answer owed before a fence came after the fence's own), so that answer could come at any time and would be taken for this request's; ${release}`,
      "KILN_DEVICE_ERROR",
      { heldShape: owed.shape ?? null, ...(releaseAt === undefined ? {} : { releaseAt }) },
    );
  }

  #notify(change: ModbusAlignmentChange): void {
    try {
      this.#onAlignment?.(change);
    } catch {
      // a listener's failure is its own
    }
  }

  /** Requests on the wire at once; lowering it lets those in flight finish. */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  set maxInFlight(value: number) {
    this.#maxInFlight = value;
  }

  /**
   * Whether the device has proved that it stamps answers with their request's transaction id
   * ({@link TRANSACTION_ID_PROOFS} answers to distinguishable requests in flight together), so requests
   * of the same shape may be pipelined.
   */
  get idsProven(): boolean {
    return this.#proofs >= TRANSACTION_ID_PROOFS;
  }

  /**
   * The shape of the request that went on the wire last while separating shapes (see
   * {@link ModbusRequestQueueOptions.separateShapes}), for a caller ordering its next requests; undefined
   * otherwise, or when the next request of any shape needs no separator (its late bound has passed).
   */
  get lastShape(): string | undefined {
    if (!this.shapesSeparated || this.#lastSent === undefined) return undefined;
    if (this.#clock.now() >= this.#lastSent.at + this.#timeoutMs + this.#guardMs) return undefined;
    return this.#lastSent.shape;
  }

  /**
   * Whether requests of one answer shape are kept apart now (see {@link ModbusRequestQueueOptions.separateShapes}):
   * the option is on, the transaction ids are not proven by pipelined answers ({@link ModbusRequestQueue.idsProven})
   * and this connection's id proof has not passed.
   */
  get shapesSeparated(): boolean {
    return this.#separateShapes && !this.idsProven && this.#idProof !== "passed";
  }

  /**
   * This connection's id proof (see {@link ModbusRequestQueueOptions.separateShapes}): `"untried"` (none sent yet,
   * or no option), `"sent"` (on the wire), `"passed"` (each answer came with its own id: no separator any more on
   * this connection) or `"failed"` (separators stay on for this connection).
   */
  get idProof(): "untried" | "sent" | "passed" | "failed" {
    return this.#idProof;
  }

  /** Separators sent so far (see {@link ModbusRequestQueueOptions.separateShapes}): their cost, in requests. */
  get separators(): number {
    return this.#separators;
  }

  /** Forgets that proof (a new connection may reach another device). */
  forgetIdProof(): void {
    this.#proofs = 0;
    this.#idProof = "untried";
  }

  /**
   * Keeps background requests (probes) off the wire until the returned release is called (idempotent):
   * a read holds them while it runs, so a probe never slips in between two of its requests (the read
   * queues one after the other, so the queue is empty for a moment after each answer) and holds the line
   * for a whole request timeout in the middle of the read.
   */
  holdBackground(): () => void {
    this.#holds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#holds--;
      if (this.#holds === 0) void this.#pump();
    };
  }

  /** Requests on the wire now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Requests waiting, including those in flight. */
  get size(): number {
    return this.#queue.length + this.#inFlight.size;
  }

  /**
   * Queues `operation` and resolves with its result once it has run. Rejects with `KILN_TIMEOUT` when it
   * takes longer than the timeout, `KILN_ABORTED` when `signal` aborts before the request was sent (it is
   * dropped from the queue), or the error given to {@link ModbusRequestQueue.fail}. Once sent, a request
   * is not cut short by `signal`: it settles with its answer or its timeout, so its outcome is never lost
   * (a caller that stops waiting races its own signal). A `background` request (a probe) waits behind
   * every other request, including those queued after it.
   */
  run<T>(
    operation: () => Promise<T>,
    what: string,
    signal?: AbortSignal,
    options: ModbusRequestOptions = {},
  ): Promise<T> {
    const background = options.background ?? false;
    if (signal?.aborted) return Promise.reject(abortError(what, signal));
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        operation,
        what,
        signal,
        background,
        shape: options.shape,
        exceptionShape: options.exceptionShape,
        fence: options.fence,
        scope: options.scope ?? "",
        unit: options.unit,
        serialBytes: options.serialBytes,
        unseparated: options.unseparated ?? false,
        resolve: resolve as (value: unknown) => void,
        reject,
        settled: false,
      };
      if (signal) {
        // One listener per signal however many requests share it (core's onAbort fans out).
        entry.stopWaiting = onAbort(signal, () => {
          // Only a request not sent yet is dropped (#execute detaches this once it is sent). One on the
          // wire runs to its answer or timeout and settles with that outcome, which the driver counts in
          // the unit's and the link's health; a caller who stops waiting races its own signal.
          const index = this.#queue.indexOf(entry);
          if (index < 0) return;
          this.#queue.splice(index, 1);
          this.#settle(entry, false, abortError(what, signal));
        });
      }
      const firstBackground = background ? -1 : this.#queue.findIndex((queued) => queued.background);
      if (firstBackground >= 0) this.#queue.splice(firstBackground, 0, entry);
      else this.#queue.push(entry);
      void this.#pump();
    });
  }

  /**
   * Rejects the requests in flight and every queued request with `error`. The answers of those in flight
   * may still come, on this connection or the next (a gateway's serial line outlives its TCP connection):
   * they enter the ledger and the answer stream is not trusted until a fence proves it aligned.
   */
  fail(error: unknown): void {
    this.#resyncPending = false;
    // Closed or reconnecting: re-armed by the next pump (a new connection), so a closed queue keeps no timer.
    if (this.#noFenceTimer !== undefined) this.#clock.clearTimeout(this.#noFenceTimer);
    this.#noFenceTimer = undefined;
    const inFlight = [...this.#inFlight];
    const queued = this.#queue.splice(0);
    for (const scope of new Set(inFlight.map((entry) => entry.scope)))
      this.#anomaly(`${inFlight.length} request(s) on the wire when the connection failed`, true, scope);
    for (const entry of inFlight) {
      this.#startQuiet(entry);
      this.#settle(entry, false, error);
      entry.release?.();
    }
    for (const entry of queued) this.#settle(entry, false, error);
  }

  #settle(entry: Entry, ok: boolean, value: unknown): void {
    if (entry.settled) return;
    entry.settled = true;
    entry.stopWaiting?.();
    if (ok) entry.resolve(value);
    else entry.reject(value);
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    let again = false;
    try {
      while (this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight && !this.#fencing && !this.#separating) {
        // Past the forget horizon no request is admitted until the link is resynchronised: the resync then goes
        // as soon as the requests on the wire are done, even while reads keep the queue busy (adv12z F3).
        if (this.#resyncDue()) break;
        const head = this.#queue[0]!;
        const holder = this.#heldBy(head.shape);
        if (holder !== undefined) {
          this.#queue.shift();
          this.#settle(head, false, this.#heldError(head, holder));
          continue;
        }
        if (this.#needsFence(head)) {
          // The fence goes alone: pumped again when the requests on the wire are done.
          if (this.#inFlight.size > 0) break;
          // No fence could be built and its backoff has passed: resynchronise (the caller's reconnect, if any).
          if (this.#unstick(head.scope) && this.#resyncDue()) break;
          const wait = this.#fenceAt(head.scope) - this.#clock.now();
          if (wait > 0) {
            await this.#clock.sleep(wait);
            continue;
          }
          if (this.#queue[0] !== head) continue;
          this.#sendFence(head);
          continue;
        }
        if (this.#delayMs > 0 || this.#guardMs > 0) {
          const quiet = this.#quietFor(head.shape);
          const wait = Math.max(this.#lastEnd + this.#delayMs, quiet) - this.#clock.now();
          if (wait > 0) {
            await this.#clock.sleep(wait);
            continue; // the head may have changed meanwhile (a live request goes before a probe)
          }
        }
        const next = this.#queue[0];
        if (!next) break;
        if (next.background && this.#holds > 0) break; // pumped again when the last hold is released

        // Until the device proved its transaction ids, an answer must fit only one request in flight.
        if (this.#sameShapeInFlight(next)) break;
        // The same shape as the request sent just before: a read of another size goes between, alone (fix12d).
        if (this.#separatorDue(next)) {
          if (this.#inFlight.size > 0) break; // pumped again when the requests on the wire are done
          // The first one on this connection: prove the ids instead (two reads of other shapes together, fix12e).
          // Not on a device seen answering out of order: a proof read timed out there would hold its shape until
          // its answer or the forget horizon (one more resync); separation simply stays on.
          if (this.#separateShapes && this.#idProof === "untried" && !this.#outOfOrder && this.#sendIdProof(next))
            continue;
          if (this.#sendSeparator(next)) continue;
        }
        const entry = this.#queue.shift()!;
        void this.#execute(entry).then(() => {
          this.#lastEnd = this.#clock.now();
          void this.#pump();
        });
      }
      // Nothing waits and the stream is suspect after a request's silence: prove it now, in the pause before
      // the next request, so a dead unit's timeout does not make the next scan's reads (a live unit's) wait for
      // a fence's round trip.
      // No fence could be built and the backoff has passed: resynchronise in this pause (no read in progress).
      if (this.#queue.length === 0 && this.#holds === 0)
        for (const scope of [...this.#noFence.keys()]) this.#unstick(scope);
      this.#scheduleUnstick();
      if (this.#queue.length === 0 && this.#idleFenceDue() !== undefined) {
        const wait = this.#fenceAt(this.#idleFenceDue()!) - this.#clock.now();
        if (wait > 0) await this.#clock.sleep(wait);
        const scope = this.#queue.length > 0 ? undefined : this.#idleFenceDue();
        if (this.#queue.length > 0) again = true;
        else if (scope !== undefined) this.#sendIdleFence(scope);
      }
    } finally {
      this.#running = false;
    }
    if (again) void this.#pump();
    else this.#resyncIfIdle();
  }

  /**
   * When (clock ms) a fence of `scope` may go: after the inter-request delay, after a failed fence's own answer had
   * time to come (`#fenceNotBefore`), and with `fenceAfterLateBound` after the late bound of every answer of its
   * scope owed by a request.
   */
  #fenceAt(scope: string): number {
    let at = Math.max(this.#lastEnd + this.#delayMs, this.#fenceNotBefore);
    if (!this.#fenceAfterLateBound) return at;
    this.#owedCount();
    for (const owed of this.#owed) if (owed.scope === scope && !owed.fence) at = Math.max(at, owed.until);
    return at;
  }

  /**
   * The scope whose fence goes now that nothing waits: suspect after a request's silence, with no fence sent since
   * its last answered request (`#idleFence`).
   */
  #idleFenceDue(): string | undefined {
    if (this.idsProven || this.#inFlight.size > 0 || this.#fencing || this.#resyncDue()) return undefined;
    for (const scope of this.#unaligned) if (this.#silenceOnly.has(scope) && this.#idleFence.has(scope)) return scope;
    return undefined;
  }

  /** Sends the fence of `scope`'s last request answered (`#idleFence`) before no request: its proof serves the next one. */
  #sendIdleFence(scope: string): void {
    const fence = this.#idleFence.get(scope);
    this.#idleFence.delete(scope);
    this.#sendFence({
      operation: () => Promise.resolve(),
      what: "the next request",
      signal: undefined,
      background: false,
      fence,
      scope,
      shape: undefined,
      resolve: () => undefined,
      reject: () => undefined,
      settled: true,
    });
  }

  /**
   * Whether a separator must go before `entry` (see {@link ModbusRequestQueueOptions.separateShapes}): it has the
   * shape of the request sent just before it, within that one's late bound, and the ids are not proven (or proven
   * by the id proof only and {@link SAME_SHAPE_RUN} requests of that shape went in a row).
   */
  #separatorDue(entry: Entry): boolean {
    if ((!this.#separateShapes && !this.#boundShapeRuns) || entry.unseparated === true) return false;
    if (entry.shape === undefined || entry.fence === undefined) return false;
    const last = this.#lastSent;
    if (last === undefined || last.shape !== entry.shape) return false;
    const now = this.#clock.now();
    if (now >= last.at + this.#timeoutMs + this.#guardMs) return false;
    // No id on the answers (RTU), an anomaly seen lately: one separator per SAME_SHAPE_RUN (fix12h).
    if (this.#boundShapeRuns && now < this.#lastAnomalyAt + SHIFT_WATCH_MS && this.#sameShapeRun >= SAME_SHAPE_RUN)
      return true;
    if (!this.#separateShapes) return false;
    if (this.shapesSeparated) return true;
    // Proven by the id proof alone, one request at a time: still one separator per SAME_SHAPE_RUN (fix12g).
    // Pipelined answers (idsProven, maxInFlight > 1) show a shifted stream themselves, as duplicates.
    return (
      this.#idProof === "passed" && !this.idsProven && this.#maxInFlight === 1 && this.#sameShapeRun >= SAME_SHAPE_RUN
    );
  }

  /**
   * Sends a separator before `next` (see {@link ModbusRequestQueueOptions.separateShapes}), alone, like any
   * request (its timeout, mismatch or untrusted answer is an anomaly as for any request); its outcome is ignored.
   * False when `next`'s fence builder finds no read of another shape that no answer on its way has: `next` then
   * goes without one.
   */
  #sendSeparator(next: Entry): boolean {
    const shape = next.shape;
    const separator = next.fence!((candidate) => candidate === shape || this.#isUnsure(candidate));
    if (separator === undefined) return false;
    this.#separators++;
    this.#separating = true;
    const entry = this.#readBefore(
      next,
      separator,
      `a read of another size sent between two requests of one answer shape (${shape}), before ${next.what}`,
    );
    void this.#execute(entry).then(() => this.#separated());
    return true;
  }

  /**
   * A read of `next`'s fence builder sent alone before `next` (a separator or an id proof's read, see
   * {@link ModbusRequestQueueOptions.separateShapes}): in `next`'s scope, like any request as to its answer; its
   * outcome is the sender's (ignored unless `resolve`/`reject` are set on it).
   */
  #readBefore(next: Entry, read: ModbusFence, what: string): Entry {
    return {
      operation: read.run,
      what,
      signal: undefined,
      background: false,
      fence: undefined,
      scope: next.scope,
      shape: read.shape,
      exceptionShape: read.exceptionShape,
      unit: read.unit,
      serialBytes: read.serialBytes,
      resolve: () => undefined,
      reject: () => undefined,
      settled: false,
    };
  }

  /** A separator or id proof is done: the queue goes on (its end counts as the last request's end). */
  #separated(): void {
    this.#separating = false;
    this.#lastEnd = this.#clock.now();
    void this.#pump();
  }

  /**
   * Sends this connection's id proof before `next` (see {@link ModbusRequestQueueOptions.separateShapes}): two reads
   * of two shapes that are neither `next`'s nor one possibly on its way, built by `next`'s fence builder, on the
   * wire together (each executed in this same tick, so both frames are written before any answer can come). It
   * passes when the first is answered (with its own id: the client matches answers by id and checks each against
   * its request; data or a Modbus exception) while the second is on the wire, and the second is answered too. Otherwise (a timeout, an answer
   * that did not fit, the link lost) it fails: each failure is an anomaly like any request's, and separators stay
   * on for this connection. False when two such reads cannot be built (nothing answered yet, or no free size).
   */
  #sendIdProof(next: Entry): boolean {
    const shape = next.shape;
    const first = next.fence!((candidate) => candidate === shape || this.#isUnsure(candidate));
    if (first === undefined) return false;
    const second = next.fence!(
      (candidate) => candidate === shape || candidate === first.shape || this.#isUnsure(candidate),
    );
    if (second === undefined) return false;
    this.#idProof = "sent";
    this.#separating = true;
    const connection = this.#connection;
    let firstAnswered = false;
    let secondAnswered = false;
    let firstWhileSecondOut = false;
    const entryOf = (read: ModbusFence, which: string): Entry =>
      this.#readBefore(
        next,
        read,
        `${which} of two reads sent together to prove that answers carry their own request's id (before ${next.what})`,
      );
    const a = entryOf(first, "the first");
    const b = entryOf(second, "the second");
    // An exception is an answer too (a refused address proves the id as well as data: under a peer stamping the
    // newest id the first read gets no answer at all); not one the queue did not trust (`unprovenException`).
    const answered = (error: unknown): boolean => typeof modbusFailureOf(error) === "number";
    a.resolve = () => {
      firstAnswered = true;
      firstWhileSecondOut = this.#inFlight.has(b) && !b.settled;
    };
    a.reject = (error) => {
      if (!answered(error)) return;
      firstAnswered = true;
      firstWhileSecondOut = this.#inFlight.has(b) && !b.settled;
    };
    b.resolve = () => {
      secondAnswered = true;
    };
    b.reject = (error) => {
      secondAnswered = answered(error);
    };
    // Both frames in one write where the transport allows it: sent apart, a gateway that answers the first before
    // the second reaches it passes the proof with the newest id (adv12f H2). Released once both are written (the
    // writes happen in this tick's microtasks) or, at the latest, when both are done.
    let release: (() => void) | undefined;
    try {
      release = this.#holdWrites?.();
    } catch {
      release = undefined;
    }
    const done = Promise.all([this.#execute(a), this.#execute(b)]);
    if (release !== undefined) setImmediate(release);
    void done.then(() => {
      release?.();
      if (this.#connection === connection && this.#idProof === "sent")
        this.#idProof =
          firstAnswered && secondAnswered && firstWhileSecondOut && !this.#idsDistrusted ? "passed" : "failed";
      this.#separated();
    });
    return true;
  }

  /** Whether `entry` waits for a fence's proof: the answer stream may be shifted and it has a fence. */
  #needsFence(entry: Entry): boolean {
    return this.#unaligned.has(entry.scope) && entry.fence !== undefined && !this.idsProven;
  }

  /** Whether an answer of `shape` may still be on its way (sent since the last proof, or in the ledger). */
  #isUnsure(shape: string | undefined): boolean {
    return (
      this.#sentUnsure(shape) ||
      this.#sentUnsure(undefined) ||
      this.#quietFor(shape) > this.#clock.now() ||
      this.#heldByOwed(shape)
    );
  }

  /**
   * Sends a fence for `head` (see {@link ModbusRequestOptions.fence}): its own answer proves the stream
   * aligned; anything else fails `head` without sending it.
   */
  #sendFence(head: Entry): void {
    const fence = head.fence!((shape) => this.#isUnsure(shape));
    if (fence === undefined) {
      const stuck = this.#stuckAt(head.scope);
      const index = this.#queue.indexOf(head);
      if (index < 0) return;
      this.#queue.splice(index, 1);
      const when = new Date(stuck.resyncAt).toISOString();
      const how = this.#onResync === undefined ? "" : " and the link reconnected";
      this.#settle(
        head,
        false,
        notSent(
          head.what,
          `no fence of a distinct shape could be built (every size inside the reads that answered has the shape of a request sent since the answer stream was last proven); the answer stream is resynchronised at ${when} (what was sent since the last proof forgotten${how}), then fenced again`,
          "KILN_DEVICE_ERROR",
          { resyncAt: stuck.resyncAt },
        ),
      );
      return;
    }
    this.#fencing = true;
    const entry: Entry = {
      operation: fence.run,
      what: `fence before ${head.what}`,
      signal: undefined,
      background: false,
      fence: undefined,
      fenceFor: head,
      scope: head.scope,
      shape: fence.shape,
      exceptionShape: fence.exceptionShape,
      unit: fence.unit,
      serialBytes: fence.serialBytes,
      resolve: () => undefined,
      reject: () => undefined,
      settled: false,
    };
    void this.#execute(entry).then(() => {
      this.#fencing = false;
      this.#lastEnd = this.#clock.now();
      void this.#pump();
    });
  }

  /**
   * `scope`'s state with no fence to build (see `#noFence`): started now with the first backoff, or the one in
   * progress. The reason is what `alignment` reports (the driver's `answer stream` endpoint).
   */
  #stuckAt(scope: string): { readonly tries: number; readonly resyncAt: number } {
    let stuck = this.#noFence.get(scope);
    if (stuck === undefined) {
      const tries = (this.#noFenceTries.get(scope) ?? 0) + 1;
      this.#noFenceTries.set(scope, tries);
      const backoff = reconnectDelay(tries, {
        initialDelayMs: Math.min(this.#timeoutMs + this.#guardMs, NO_FENCE_MAX_BACKOFF_MS),
        maxDelayMs: NO_FENCE_MAX_BACKOFF_MS,
        jitter: "none",
      });
      stuck = { tries, resyncAt: this.#clock.now() + backoff };
      this.#noFence.set(scope, stuck);
      this.#alignmentReason = `no fence of a distinct shape could be built; resynchronising the answer stream at ${new Date(stuck.resyncAt).toISOString()}`;
    }
    return stuck;
  }

  /**
   * A scope with no fence to build past its backoff (see `#noFence`), with nothing on the wire: forgets what was
   * sent since its last proof (its unsure shapes), so the next fence may read any size inside the reads that
   * answered whose answer is not in the ledger (within its late bound, or held by a device answering out of order),
   * and, with `onResync`, asks the caller to reconnect first (at most once per connection). True when it did.
   */
  #unstick(scope: string): boolean {
    const stuck = this.#noFence.get(scope);
    if (stuck === undefined || stuck.resyncAt > this.#clock.now() || this.#inFlight.size > 0 || this.#fencing)
      return false;
    this.#noFence.delete(scope);
    this.#unsure.delete(scope);
    if (this.#onResync !== undefined && !this.#resyncAsked)
      this.#resyncReason ??= `resynchronising the link: no fence of a distinct shape could be built since ${new Date(stuck.resyncAt).toISOString()} (attempt ${stuck.tries})`;
    return true;
  }

  /** Arms `#noFenceTimer` for the earliest `#noFence` backoff (none armed, some pending). */
  #scheduleUnstick(): void {
    if (this.#noFenceTimer !== undefined || this.#noFence.size === 0) return;
    let at = Number.POSITIVE_INFINITY;
    for (const stuck of this.#noFence.values()) at = Math.min(at, stuck.resyncAt);
    this.#noFenceTimer = this.#clock.setTimeout(
      () => {
        this.#noFenceTimer = undefined;
        void this.#pump();
      },
      Math.max(0, at - this.#clock.now()),
    );
  }

  /** A fence did not prove the stream aligned: the request it went before fails, never sent. */
  #fenceFailed(fence: Entry, error: unknown): void {
    // A fence sent while nothing waited (see #sendIdleFence) went before the first request queued since that
    // needs one: it would otherwise wait for another fence's late bound after this one's.
    const index = this.#queue.indexOf(fence.fenceFor!);
    const head =
      index >= 0
        ? fence.fenceFor!
        : this.#queue.find((entry) => entry.scope === fence.scope && this.#needsFence(entry));
    if (head === undefined) return;
    this.#queue.splice(this.#queue.indexOf(head), 1);
    const failure = modbusFailureOf(error);
    if (failure === "disconnected") {
      this.#settle(head, false, error);
      return;
    }
    const why =
      failure === "timeout"
        ? `the fence sent before it to prove the answer stream aligned got no answer within ${this.#timeoutMs + this.#guardMs} ms`
        : `the fence sent before it to prove the answer stream aligned got no answer of its own (${error instanceof Error ? error.message : String(error)})`;
    this.#settle(head, false, notSent(head.what, why, failure === "timeout" ? "KILN_TIMEOUT" : "KILN_DEVICE_ERROR"));
  }

  #sameShapeInFlight(entry: Entry): boolean {
    if (entry.shape === undefined || this.idsProven) return false;
    for (const other of this.#inFlight) if (other.shape === entry.shape) return true;
    return false;
  }

  /**
   * Counts a proof of right transaction ids: `entry` was answered with its own id while a request of another
   * shape, sent after it, was in flight (a device stamping the newest id would have given it that one's id,
   * which the answer would not fit).
   */
  #proveIds(entry: Entry): void {
    if (entry.shape === undefined || this.idsProven || this.#idsDistrusted) return;
    for (const other of this.#inFlight) {
      if (other !== entry && (other.sent ?? 0) > (entry.sent ?? 0) && other.shape !== entry.shape) {
        this.#proofs++;
        return;
      }
    }
  }

  /**
   * A sign of a shifted answer stream (a stray answer no owed one accounts for, a mismatch, an answer overtaking a
   * fence's): an id proof that passed (by timing the client cannot see, adv12f H2) or pipelined answers that proved
   * the ids are no longer trusted, and separation is back on for this connection, for good (ADR 0041 fix12f).
   */
  #distrustIds(): void {
    if (this.#idsDistrusted) return;
    this.#idsDistrusted = true;
    this.#proofs = 0;
    if (this.#idProof !== "untried") this.#idProof = "failed";
  }

  /**
   * `entry` failed without its own answer (a timeout, an answer that did not fit, a fence's failure too): with
   * the guard on, it enters the ledger of possibly late answers until its answer can no longer come (its send
   * time plus the late bound, however early it failed: after an answer that did not fit, its own may still
   * come stamped with a later request's id), and requests of its shape wait until then, then a fence (see
   * {@link ModbusRequestOptions.fence}).
   */
  #startQuiet(entry: Entry, unproven = false): void {
    if (this.#guardMs <= 0) return;
    const now = this.#clock.now();
    // Its own answer may come until its send time plus the late bound (a timer firing late adds its delay).
    const until = Math.max((entry.sentAt ?? now) + this.#timeoutMs, now) + this.#guardMs;
    this.#owed.push({
      until,
      shape: entry.shape,
      exceptionShape: entry.exceptionShape,
      proofs: this.#proofCount,
      connection: this.#connection,
      scope: entry.scope,
      fence: entry.fenceFor !== undefined,
      sentAt: entry.sentAt ?? now,
      what: entry.what,
      unit: entry.unit,
    });
    this.#owed.sort((a, b) => a.until - b.until);
    this.#ledger(this.#quiet, entry.shape, until);
    if (entry.fenceFor !== undefined) return; // its outcome is ignored: no exception learned
    // An untrusted exception was an answer: one that was this request's own says nothing later may come
    // (else one refused address read every scan would keep every later refusal untrusted).
    if (entry.exceptionShape !== undefined && !unproven)
      this.#ledger(this.#strayExceptions, entry.exceptionShape, until);
  }

  /** Extends `ledger`'s entry for `shape` to `until` (never shortens it). */
  #ledger<K>(ledger: Map<K, number>, shape: K, until: number): void {
    ledger.set(shape, Math.max(ledger.get(shape) ?? Number.NEGATIVE_INFINITY, until));
  }

  /** Whether a late exception answer to a request of `entry`'s exception shape may still come now. */
  #strayExceptionPossible(entry: Entry): boolean {
    const shape = entry.exceptionShape;
    if (shape === undefined || this.#guardMs <= 0) return false;
    if ((this.#strayExceptions.get(shape) ?? Number.NEGATIVE_INFINITY) > this.#clock.now()) return true;
    if (this.#strayOwedBy(entry) !== undefined) return true;
    if (this.idsProven) return false;
    for (const other of this.#inFlight) if (other !== entry && other.exceptionShape === shape) return true;
    return false;
  }

  /**
   * On a device seen answering out of order, the oldest answer still owed (see `#owedCount`: past its late bound
   * only on the current connection, so a resync forgets it) that an exception answer to `entry` could be: one of
   * its exception shape (or of a request without one). Its data shape is held until it comes (`#heldBy`), but an
   * exception carries no size, so it would fit any request of its function, a live unit's too (adv12v: a dead
   * unit's exception 11, 700 ms late, took the live unit offline).
   */
  #strayOwedBy(entry: Entry): Owed | undefined {
    const shape = entry.exceptionShape;
    if (shape === undefined || this.#guardMs <= 0 || !this.#outOfOrder) return undefined;
    this.#owedCount();
    let oldest: Owed | undefined;
    for (const owed of this.#owed) {
      if (owed.exceptionShape !== undefined && owed.exceptionShape !== shape) continue;
      if (oldest === undefined || owed.sentAt < oldest.sentAt) oldest = owed;
    }
    return oldest;
  }

  /**
   * `error` (exception `code`) answered `entry`, which was on the wire while a late answer of the same
   * exception shape could come (`#strayExceptionPossible`): an exception carries no size, so it may be
   * that late answer. Not trusted: a `KILN_DEVICE_ERROR` without an exception code, `details.unprovenException`.
   * When the answer it may be is owed by a device that answers out of order past its forget horizon, the link is
   * resynchronised (as for a held shape, see `#heldError`), after which that answer cannot come.
   */
  #unprovenException(entry: Entry, error: unknown, code: number): KilnError {
    const owed = this.#strayOwedBy(entry);
    let why = "while a late answer to an earlier request of the same function could still arrive";
    if (owed !== undefined) {
      why = `while the answer to ${owed.what}, sent at ${new Date(owed.sentAt).toISOString()}, had not come and this device answers out of order (an exception carries no size, so that answer, if an exception, fits any request of the same function)`;
      const releaseAt = this.#releaseAt(owed);
      if (releaseAt !== undefined && releaseAt <= this.#clock.now())
        this.#resyncReason ??= `resynchronising the link: the answer to ${owed.what}, owed by a device that answers out of order since ${new Date(owed.sentAt).toISOString()}, never came, and exceptions of its function are not trusted while it may`;
    }
    return new KilnError(
      "KILN_DEVICE_ERROR",
      `Exception ${code} answered ${entry.what} ${why}; not trusted (it may be that request's), read again next scan.`,
      { retryable: true, cause: error, details: { unprovenException: code } },
    );
  }

  /** How long (ms) `entry`'s answer, come now, took from when the peer could start on it (see `#serviceTimes`). */
  #serviceTime(entry: Entry, now: number): number {
    return now - Math.max(entry.sentAt ?? now, this.#lastAnswerAt);
  }

  /** Records that a data answer to `entry` came now, and how long it took (see `#serviceTimes`). */
  #answerTimed(entry: Entry, now: number): void {
    const key = serviceKey(entry);
    const times = this.#serviceTimes.get(key) ?? [];
    const bytes = entry.serialBytes;
    times.push({
      ms: this.#serviceTime(entry, now),
      bytes: bytes === undefined ? undefined : bytes.request + bytes.answer,
    });
    if (times.length > SERVICE_TIMES) times.shift();
    this.#serviceTimes.set(key, times);
    this.#lastAnswerAt = now;
  }

  /**
   * Whether exception `code`, come now in answer to `entry`, may leave `entry`'s own answer still to come: a gateway's
   * code (`gatewayMayAnswerLate`), or a 4 (server device failure) or 6 (server device busy) later than its scope's and
   * unit's usual time (see {@link USUAL_TIME_SLACK_MS}; ADR 0041 fix12k, adv12l): queued TCP gateways answer their
   * serial timeout with those too, and the device's late answer can then be handed to the next request of its shape.
   * Nothing on the wire tells such a 4 or 6 from the device's own; one in the usual time is the device's final answer.
   * The usual time is that of an exchange of the exception's size (see {@link usualTiming}; ADR 0041 fix12n): the
   * request's own transfer, which a gateway's serial timeout only starts after, plus twice the latency and the
   * exception's transfer, plus the slack. Twice the transfer of a 100-register write (217 ms at 9600 baud) let a
   * gateway that gives up 150-200 ms after the request went out look like the device (adv12o HIGH-1).
   */
  #answerMayFollow(entry: Entry, code: number, now: number): boolean {
    if (gatewayMayAnswerLate(code)) return true;
    if (code !== 4 && code !== 6) return false;
    const times = this.#serviceTimes.get(serviceKey(entry));
    if (times === undefined || times.length < SERVICE_TIMES_NEEDED) return true;
    const timing = usualTiming(times, entry.serialBytes);
    // Its size was not timed and no time per byte can be told (every answer timed was of one other size): not known.
    if (timing === undefined) return true;
    const { latencyMs, perByteMs } = timing;
    const requestMs = perByteMs * (entry.serialBytes?.request ?? 0);
    const usualMs = requestMs + 2 * Math.max(0, latencyMs + perByteMs * EXCEPTION_SERIAL_BYTES);
    return this.#serviceTime(entry, now) > usualMs + USUAL_TIME_SLACK_MS;
  }

  /**
   * `entry` got an exception after which its own answer may still come (see `#answerMayFollow`): the requests of its
   * shape and scope already on the wire after it may take that answer, whatever the ids' proof says (a queued gateway
   * stamps it with the id of the request it serves then, and passes the proof): their data answers are refused (see
   * `Entry.lateRisk`). New ones wait for its late bound (`#startQuiet`). Before (fix12n), with `maxInFlight` 2 on a
   * proven connection, the next one-register read took the late answer, good and wrong.
   */
  #lateMayFollow(entry: Entry): void {
    if (this.#guardMs <= 0 || entry.shape === undefined) return;
    for (const other of this.#inFlight)
      if (
        other !== entry &&
        other.shape === entry.shape &&
        other.scope === entry.scope &&
        (other.sent ?? 0) > (entry.sent ?? 0)
      )
        other.lateRisk = true;
  }

  /** Until when a request of `shape` waits: its shape's quiet time and a shapeless one's; every one for a shapeless request. */
  #quietFor(shape: string | undefined): number {
    let until = Number.NEGATIVE_INFINITY;
    const now = this.#clock.now();
    for (const [quietShape, end] of this.#quiet) {
      if (end <= now) this.#quiet.delete(quietShape);
      else if (shape === undefined || quietShape === undefined || quietShape === shape) until = Math.max(until, end);
    }
    return until;
  }

  #execute(entry: Entry): Promise<void> {
    entry.sent = ++this.#sent;
    entry.sentAt = this.#clock.now();
    this.#sameShapeRun =
      this.#lastSent !== undefined && this.#lastSent.shape === entry.shape ? this.#sameShapeRun + 1 : 1;
    this.#lastSent = { shape: entry.shape, at: entry.sentAt };
    entry.strayRisk = this.#strayExceptionPossible(entry);
    this.#countUnsure(entry, 1);
    // On the wire now: its caller's signal no longer concerns it (see run).
    entry.stopWaiting?.();
    this.#inFlight.add(entry);
    return new Promise<void>((done) => {
      let timer: TimerHandle | undefined;
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        if (timer) this.#clock.clearTimeout(timer);
        this.#inFlight.delete(entry);
        done();
      };
      entry.release = finish;
      // A fence waits behind every older answer still on the line: up to the late bound.
      const timeoutMs = entry.fenceFor === undefined ? this.#timeoutMs : this.#timeoutMs + this.#guardMs;
      timer = this.#clock.setTimeout(() => {
        timer = undefined;
        this.#startQuiet(entry);
        // A probe's silence (a dead unit probed on its backoff) is held back by the ledger only: its shape is
        // another size than the reads', so a fence per probe would cost the live units without need.
        if (!entry.background) {
          this.#anomaly(`no answer to ${entry.what} within ${timeoutMs} ms`, true, entry.scope);
          if (entry.fenceFor === undefined) this.#silenceOnly.add(entry.scope);
        }
        const error = modbusTimeoutError(timeoutMs, entry.what);
        if (entry.fenceFor !== undefined) {
          this.#fenceFailed(entry, error);
          try {
            this.#onFenceTimeout?.(error);
          } catch {
            // a listener's failure is its own
          }
        }
        this.#settle(entry, false, error);
        finish();
      }, timeoutMs);
      let promise: Promise<unknown>;
      try {
        promise = entry.operation();
      } catch (error) {
        promise = Promise.reject(error);
      }
      promise.then(
        (value) => {
          if (finished) return; // timed out (or failed) already: its outcome was settled then
          this.#answerTimed(entry, this.#clock.now());
          if (entry.fenceFor !== undefined) this.#prove(entry);
          else if (entry.lateRisk === true) {
            // The answer it took may be the late one of the earlier request of its shape a gateway gave up on.
            this.#startQuiet(entry);
            this.#settle(
              entry,
              false,
              unalignedError(
                entry.what,
                "an earlier request of its size got a gateway's exception, whose answer may still have come",
              ),
            );
            finish();
            return;
          } else if (
            this.#unaligned.has(entry.scope) &&
            entry.fence !== undefined &&
            (entry.sent ?? 0) <= this.#anomalyAt
          ) {
            // On the wire when the anomaly was seen: the answer it took may be an older one.
            this.#startQuiet(entry);
            this.#settle(entry, false, unalignedError(entry.what, this.#alignmentReason));
            finish();
            return;
          } else if (!this.#unaligned.has(entry.scope) && this.#owedCount() === 0 && this.#inFlight.size === 1)
            this.#unsure.delete(entry.scope);
          if (this.#inFlight.size > 1) this.#proveIds(entry);
          const doubt = typeof value === "object" && value !== null ? answerDoubt(value) : undefined;
          if (doubt !== undefined && entry.fenceFor === undefined) {
            // Taken uncertain as a possible repeat (ModbusAnswerRepeats): its real answer may still come, and no
            // request of its shape may take it (adv12 fix12e H2).
            this.#startQuiet(entry);
            this.#anomaly(`${entry.what} got ${doubt.split(":")[0]}`, true, entry.scope);
          } else {
            if (entry.fence !== undefined && entry.fenceFor === undefined)
              this.#idleFence.set(entry.scope, entry.fence);
            if (entry.fenceFor === undefined) this.#answeredInOrder();
          }
          this.#settle(entry, true, value);
          finish();
        },
        (rejection: unknown) => {
          if (finished) return;
          let error = rejection;
          let failure = modbusFailureOf(error);
          const now = this.#clock.now();
          const mayFollow = typeof failure === "number" && this.#answerMayFollow(entry, failure, now);
          const answered = failure !== "timeout" && failure !== "disconnected";
          if (answered && !(KilnError.is(error) && error.details.sent === false)) this.#lastAnswerAt = now;
          const unproven =
            typeof failure === "number" && (entry.strayRisk === true || this.#strayExceptionPossible(entry));
          // Not connected: the request never went on the wire (one that did was failed by fail() first).
          if (failure === "disconnected") this.#countUnsure(entry, -1);
          // Never written by the client (an RTU line busy with noise, ADR 0041 fix12z): nothing was sent, so no
          // answer is owed and no anomaly seen; the line's own noise made the scope suspect already.
          if (KilnError.is(error) && error.details.sent === false) {
            this.#countUnsure(entry, -1);
            if (entry.fenceFor !== undefined) this.#fenceFailed(entry, error);
            this.#settle(entry, false, error);
            finish();
            return;
          }
          if (entry.fenceFor !== undefined) {
            // An exception answers the fence unless an exception of its function may still be on its way.
            // Nor while one is owed by a device that answers out of order: it may be that answer.
            // A gateway's exception (10, 11, a code Modbus does not define, and a 4 or 6 later than the unit's usual
            // time, which queued gateways answer their serial timeout with too: it gave up waiting for the device)
            // proves nothing: the device's own answer may still come after it and be handed to the next request
            // (ADR 0041 fix12f, adv12i, fix12k).
            const gaveUp = mayFollow;
            if (typeof failure === "number" && !gaveUp && !this.#strayExceptionBesides(entry)) this.#prove(entry);
            else if (failure === "disconnected") this.#fenceFailed(entry, error);
            else {
              if (failure !== "timeout" && !gaveUp) {
                this.#fenceNotBefore = this.#clock.now() + this.#timeoutMs;
                this.#distrustIds();
              }
              this.#startQuiet(entry, true);
              this.#anomaly(`${entry.what} got an answer that did not fit it`, true, entry.scope);
              this.#fenceFailed(entry, error);
            }
            this.#settle(entry, false, error);
            finish();
            return;
          }
          if (unproven) {
            error = this.#unprovenException(entry, error, failure as number);
            failure = undefined;
          } else if (typeof failure === "number" && mayFollow) {
            // The gateway gave up waiting for the device (exception 10 or 11, or its own code), so the device's
            // answer may still come on the serial side after the gateway moved on, and be handed to the next
            // request: for the answer stream this is a timeout (ADR 0041 fix12f; 10 and other codes: adv12i, a Moxa
            // NPort answers its serial timeout with 10). 4 and 6 too when later than the unit's usual time (fix12k):
            // queued gateways answer their serial timeout with them. The request still fails with the exception (for
            // the unit, a 4 or 6 is the device's answer: it stays online).
            this.#startQuiet(entry);
            this.#lateMayFollow(entry);
            if (!entry.background) {
              const whose = gatewayMayAnswerLate(failure) ? "a gateway's" : "the device's or a gateway's";
              this.#anomaly(
                `${entry.what} got exception ${failure}, ${whose}: if a gateway gave up waiting, the device's answer may still come`,
                true,
                entry.scope,
              );
              this.#silenceOnly.add(entry.scope);
            }
            // A late 4 or 6: the writer reports the write's outcome as not known, not as refused (fix12k).
            if (!gatewayMayAnswerLate(failure)) error = markLateException(error);
            this.#settle(entry, false, error);
            finish();
            return;
          }
          // An answer that did not fit (a mismatch, a pipeline desync) may not have been this request's own:
          // its own may still come, stamped with a later request's id, like a late one.
          if (typeof failure !== "number" && failure !== "disconnected") {
            if (failure !== "timeout") this.#distrustIds();
            this.#startQuiet(entry, unproven);
            if (!unproven) this.#anomaly(`${entry.what} got an answer that did not fit it`, true, entry.scope);
            if (mayFollow) this.#lateMayFollow(entry);
            if (mayFollow && !entry.background) {
              // Not trusted, yet it may be a gateway's giving up on this request (a 4 or 6 past the usual time, a
              // gateway's code), whose device answer may still come: to a request of its size already on the wire
              // too (fix12n: with `maxInFlight` 2 the next one-register read took it, good and wrong).
              this.#anomaly(
                `${entry.what} got exception ${String(modbusFailureOf(rejection))}, not trusted as its own, and if a gateway gave up waiting the device's answer may still come`,
                true,
                entry.scope,
              );
              this.#silenceOnly.add(entry.scope);
            }
          }
          this.#settle(entry, false, error);
          finish();
        },
      );
    });
  }
}

/**
 * Whose usual answer time a request's answer counts in (see `#serviceTimes`): its scope's and its unit's. On TCP every
 * request has the one scope `""`, and a gateway's units answer in their own times: one median for all of them let a
 * slow unit's times make a fast unit's gateway 4 or 6 look usual (adv12l HIGH-1: 152-197 wrong good values), and a
 * fast unit's make a slow unit's own busy answers look late.
 */
function serviceKey(entry: Entry): string {
  return `${entry.scope}\u0000${entry.unit ?? ""}`;
}

/**
 * How long (ms) an exchange usually takes, judged from a unit's timed data answers (ADR 0041, amendment fix12n): a
 * latency plus a time per serial byte. Behind a gateway to a serial line a large block's answer time
 * is mostly transfer; one median of a unit's blocks and short reads let a gateway's 4 at 300 ms for a short read look
 * usual (adv12l MEDIUM-3). The time per byte is the median of the slopes between pairs of answers of different sizes
 * (Theil-Sen: a few answers delayed by the host or the gateway's queue move it little), at least 0; the latency is
 * the median of what is left of each answer's time. With the request's (`serialBytes`) or an answer's bytes unknown,
 * with every answer of the request's size, or times that do not grow with size, the time per byte is 0 and the latency
 * is the times' median (fix12k's rule). Undefined when every answer timed is of one size and the request's exchange
 * is of another: no time per byte can be told, and the other size's median says nothing of this one (a unit read in
 * 16 blocks or more a scan: a gateway's 4 for its short read under the blocks' median, adv12o MEDIUM-3). Computed
 * only when a 4 or 6 comes: at most {@link SERVICE_TIMES} answers, 120 pairs.
 */
function usualTiming(
  times: readonly ServiceTime[],
  serialBytes: ModbusSerialBytes | undefined,
): { latencyMs: number; perByteMs: number } | undefined {
  let perByte = 0;
  if (serialBytes !== undefined && times.every((time) => time.bytes !== undefined)) {
    const own = serialBytes.request + serialBytes.answer;
    if (times.every((time) => time.bytes === times[0]!.bytes) && times[0]!.bytes !== own) return undefined;
    const slopes: number[] = [];
    for (let i = 0; i < times.length; i++)
      for (let j = i + 1; j < times.length; j++) {
        const a = times[i]!;
        const b = times[j]!;
        if (a.bytes !== b.bytes) slopes.push((b.ms - a.ms) / (b.bytes! - a.bytes!));
      }
    if (slopes.length > 0) perByte = Math.max(0, median(slopes));
  }
  const latencyMs = median(times.map((time) => time.ms - perByte * (time.bytes ?? 0)));
  return { latencyMs, perByteMs: perByte };
}

/** The median of `values` (the upper one of an even count), which is not empty. */
function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/** `KILN_TIMEOUT` or `KILN_DEVICE_ERROR` for a request failed before it was sent: `details.sent: false`. */
function notSent(
  what: string,
  why: string,
  code: "KILN_TIMEOUT" | "KILN_DEVICE_ERROR",
  extra: Record<string, unknown> = {},
): KilnError {
  return new KilnError(code, `${what} was not sent: ${why}.`, {
    retryable: true,
    details: { sent: false, unaligned: true, ...(code === "KILN_TIMEOUT" ? { modbus: "timeout" } : {}), ...extra },
  });
}

/** `KILN_DEVICE_ERROR` for an answer taken while the answer stream was not proven aligned. */
function unalignedError(what: string, reason: string): KilnError {
  return new KilnError(
    "KILN_DEVICE_ERROR",
    `The answer to ${what} is not trusted: it came while the answer stream may be shifted (${reason}); read again.`,
    { retryable: true, details: { unaligned: true } },
  );
}
