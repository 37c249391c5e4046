import { randomInt } from "node:crypto";
import { type Clock, KilnError, type Logger, QualityCodes, type Sample, type Tag, type TagValue } from "@kiln/core";
import { type SubscriptionOptions } from "@kiln/core/driver-kit";
import { type TimerHandle } from "@kiln/core";
import { abortError, onAbort, raceAbort, reconnectDelay } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  ClientMonitoredItemGroup,
  DataChangeFilter,
  DataChangeTrigger,
  DeadbandType,
  TimestampsToReturn,
  type ClientMonitoredItemBase,
  type ClientSession,
  type ClientSubscriptionOptions,
  ClientSubscription,
  type DataValue,
  type MonitoringParametersOptions,
  type NodeId,
  type StatusCode,
} from "node-opcua-client";
import { isConnectionLoss, statusNameOf, statusOfError } from "./opcua-errors";
import { heldSubscriptionIds, PENDING_SUBSCRIPTION_ID } from "./opcua-orphan-subscriptions";
import { primePublishEngine } from "./opcua-publish-engine";
import { namespaceProblem, resolveNodeAddress, type OpcuaNodeAddress } from "./opcua-node-id";
import { asUpkeepCall } from "./opcua-request-origin";
import { isReplayed, isReplayedMessage, replayedSample } from "./opcua-replayed-notifications";
import { badSample, sampleFromDataValue, staleSample } from "./opcua-samples";
import {
  subscriptionTiming,
  type SubscriptionTiming,
  type SubscriptionTimingOptions,
} from "./opcua-subscription-timing";

/** The purpose of the read of current values after a repair, for the link watchdog (`asUpkeepCall`). */
const CURRENT_VALUES_READ = "the read of current values after a repair";

/** Items the server refused are retried on the driver kit's backoff, each delay shortened by up to this fraction. */
const RETRY_JITTER = 0.2;

/** What a tag subscription needs from the connection it lives on. */
export interface SubscriptionConnection {
  readonly session: ClientSession;
  readonly namespaceArray: readonly string[];
  /**
   * Set while the namespace array has not been read Good on this session (the reason): every
   * `nsu=` item is then dropped and its tag bad with "namespace table not read yet: <reason>";
   * the driver bumps {@link generation} once it is read (docs/adr/0022, amendment fix13t).
   */
  readonly namespacesUnread?: string | undefined;
  readonly maxMonitoredItemsPerCall: number;
  readonly generation: number;
  /**
   * How long the server may be silent before the link counts as stalled, ms (the driver's link
   * watchdog). A subscription's keep-alive watchdog never trips sooner: a server that revised the
   * publishing interval down (a 1 s group at a server's 50 ms maximum) would otherwise have it
   * re-create the subscription after 0.5 s of silence that the link bound allows.
   */
  readonly silenceBoundMs?: number;
  /** The server's MaxNodesPerRead (0: none), for the read of current values after a repair. */
  readonly limits?: { readonly maxNodesPerRead: number };
  /**
   * Aborts when the driver gives this connection up (a rebuild dropped it, an attempt was
   * abandoned, `close()`): work of {@link OpcuaTagSubscription.ensure} still running on it leaves
   * the subscription's queue at once, whatever node-opcua still holds (docs/adr/0022, amendment
   * fix13h).
   */
  readonly retired?: AbortSignal;
}

/** The driver-side services a tag subscription uses. */
export interface TagSubscriptionContext {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly retry: { readonly initialDelayMs: number; readonly maxDelayMs: number };
  /** Bounds of the subscription's publishing interval and keep-alive (driver option `subscriptions`). */
  readonly timing: SubscriptionTimingOptions;
  /** Source of randomness in `[0, 1)` for the retry jitter; absent: the driver kit's default. */
  readonly random?: () => number;
  /** The connection to use now, or undefined while there is none that works. */
  readonly connection: () => SubscriptionConnection | undefined;
  /**
   * Called with the server-side id of a subscription closed while there was no working
   * connection: the driver deletes it on the server once the session is repaired.
   */
  readonly deleteLater: (subscriptionId: number) => void;
  /**
   * Called when the subscription, once created, cannot be created again (after a repair, or
   * after the server terminated it): the driver reports it. Its tags are already `bad` with the
   * reason, and it is retried on the driver kit's backoff.
   */
  readonly recreationFailed: (error: unknown) => void;
  /**
   * Called when the keep-alive watchdog expired again on a subscription created after the last
   * expiry, with no Publish answer in between (the 2nd, 4th, 8th... such expiry in a row): the
   * session's publish engine is not to be trusted, and the driver opens a new session (`reason`
   * says why), re-creating every subscription there. Its tags are already `bad` with the reason.
   * Returns false when the driver does not (it is not `connected`: a repair owns the session);
   * the subscription is then re-created on the current session.
   */
  readonly publishingStalled: (reason: string) => boolean;
  /**
   * Called when the server refused creating the subscription for its limit
   * (BadTooManySubscriptions) on `session`: subscriptions left by lost creation replies may hold
   * the slots, and the driver makes them answer so they are deleted (docs/adr/0022, amendment
   * fix13k-slots). Absent: nothing is done.
   */
  readonly subscriptionsRefused?: (session: ClientSession) => void;
}

interface Entry {
  readonly tag: Tag;
  readonly address: OpcuaNodeAddress;
  nodeId: NodeId | undefined;
  item: ClientMonitoredItemBase | undefined;
  /**
   * The server-side id of the subscription on which a CreateMonitoredItems result last confirmed
   * `item` (Good). node-opcua re-creates a subscription after a repair under a new id and then its
   * items; when that fails the items keep their old Good status but the server holds none of them
   * (docs/adr/0022, amendment fix13q).
   */
  confirmedOn: number | undefined;
  /** Identifies the creation attempt whose notifications are current for this entry. */
  attempt: number;
  lastValue: TagValue | undefined;
  useDeadband: boolean;
  /** The status last reported for a failed item, so a repeated failure is not re-reported. */
  reportedStatus: number | undefined;
  /** A live (not replayed) notification, or a usable read answer, arrived since the last connection loss. */
  liveSinceLoss: boolean;
  /**
   * The reason last delivered for a read of the current value after a repair that gave the tag no
   * usable value (refused Read, bad or missing result), so a repeat is not delivered again.
   */
  unreadReason: string | undefined;
}

const FILTER_REFUSALS = new Set([
  "BadMonitoredItemFilterUnsupported",
  "BadFilterNotAllowed",
  "BadDeadbandFilterInvalid",
  "BadMonitoredItemFilterInvalid",
]);

const NUMERIC_TYPES = new Set<Tag["dataType"]>(["int16", "uint16", "int32", "uint32", "float32", "float64"]);

/**
 * One `PlcDriver.subscribe` call: an OPC UA subscription on the driver's session with one
 * monitored item per tag, created in batches no larger than the server's
 * MaxMonitoredItemsPerCall. It keeps the desired state (which tags, how sampled), so after a
 * reconnect or a server restart {@link ensure} brings the server back to it: a recreated
 * subscription, items for NodeIds that moved (namespace index changed) and items the server
 * refused (BadNodeIdUnknown...), retried with capped exponential backoff.
 */
export class OpcuaTagSubscription {
  readonly #entries: Entry[];
  readonly #options: SubscriptionOptions;
  readonly #onSamples: (samples: Sample[]) => void;
  readonly #context: TagSubscriptionContext;
  #subscription: ClientSubscription | undefined;
  #session: ClientSession | undefined;
  #generation = -1;
  #queue: Promise<void> = Promise.resolve();
  #retryTimer: TimerHandle | undefined;
  /** The keep-alive watchdog of the current subscription (see {@link keepAliveWatchdogMs}). */
  #watchdog: TimerHandle | undefined;
  #retryAttempt = 0;
  /** The first ensure() (the subscribe() call's) has settled well: later failures are reported on the tags. */
  #background = false;
  /** Numbers item-creation batches, so a late reply to an older batch is recognised. */
  #nextAttempt = 1;
  #buffer: Sample[] = [];
  #flushScheduled = false;
  #closed = false;
  #warnedNoDeadband = false;
  /** A subscription was created once: a later failure to create one leaves the group without. */
  #established = false;
  /** The status last reported for a failed (re-)creation of the subscription, so a repeat is not re-reported. */
  #reportedRecreation: number | undefined;
  /** A read of current values after a loss is in flight ({@link #deliversAgain}). */
  #readingCurrent = false;
  /** Since the last loss, no read of current values has yet completed ({@link #deliversAgain}). */
  #currentUnread = false;
  /**
   * The subscription answered a Publish live since the last loss, but the read of current values
   * could not be sent then: the connection was being repaired, its session not yet this group's, or
   * the items not yet bound to the session's namespace table (an `nsu=` value was withheld for it).
   * The {@link #ensureNow} that binds the group to the connection sends it, not the next live
   * Publish answer, which for unchanged values is a whole keep-alive period later (docs/adr/0022,
   * amendment fix13n-withheld).
   */
  #readPending = false;
  /** Counts losses, so a read answered after a newer loss is not delivered. */
  #losses = 0;
  /** Failed reads of current values since the last loss or success: the backoff's attempt ({@link #readFailed}). */
  #readAttempt = 0;
  /** Clock ms before which no read of current values is sent (its backoff after a failure). */
  #readNotBefore = 0;
  /** The refusal of a whole read last logged as a warning, so a repeat is logged at debug only. */
  #readRefusal: string | undefined;
  /**
   * Since node-opcua re-created an `nsu=` item of this group on a new session in a repair (maybe
   * another server run's, with other namespace indexes), the namespace table has not been seen read
   * Good on that session ({@link #ensureNow}): values of `nsu=` items are not delivered
   * (docs/adr/0022, amendment fix13t). A session that was only re-activated is the same server run
   * (its namespace indexes cannot move), so the notifications it replays are still delivered.
   */
  #tableUnverified = false;
  /** Keep-alive watchdog expiries in a row with no Publish answer for this group in between ({@link #watchdogExpired}). */
  #silentExpiries = 0;

  constructor(
    tags: readonly Tag[],
    addresses: readonly OpcuaNodeAddress[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
    context: TagSubscriptionContext,
  ) {
    this.#entries = tags.map((tag, index) => ({
      tag,
      address: addresses[index]!,
      nodeId: undefined,
      item: undefined,
      confirmedOn: undefined,
      attempt: 0,
      lastValue: undefined,
      useDeadband: true,
      reportedStatus: undefined,
      liveSinceLoss: true,
      unreadReason: undefined,
    }));
    this.#options = options;
    this.#onSamples = onSamples;
    this.#context = context;
  }

  /** Tags whose monitored item is not (yet) working on the server. */
  get pendingTags(): string[] {
    return this.#entries.filter((entry) => entry.item === undefined).map((entry) => entry.tag.name);
  }

  /**
   * Brings the server in line with the desired state on the current connection. Serialised:
   * concurrent calls run one after the other. Rejects only when the OPC UA subscription itself
   * cannot be created; refused items are retried in the background.
   */
  ensure(): Promise<void> {
    const run = this.#queue.then(async () => {
      const connection = this.#context.connection();
      try {
        // A request node-opcua never settles (a CreateSubscription outstanding when the channel
        // broke) must not hold every later ensure(): the work on a connection the driver gave up
        // leaves the queue at once; what it still does later is checked against the same signal
        // (adv13g HIGH; docs/adr/0022, amendment fix13h).
        await raceAbort(this.#ensureNow(connection), connection?.retired, "re-creating the OPC UA subscription");
      } catch (error) {
        // Given up with its connection: the driver's loss path reports the tags; the next connection re-creates it.
        const retired = connection?.retired?.aborted === true;
        // Also a group whose subscribe() resolved while there was no connection (its first
        // creation runs in the background): its tags say why it has no subscription (fix13k-slots).
        if ((this.#established || this.#background) && !this.#subscription && !this.#closed && !retired)
          this.#recreationFailed(error);
        if (connection && !retired && statusOfError(error)?.statusName === "BadTooManySubscriptions") {
          this.#context.subscriptionsRefused?.(connection.session);
        }
        // A configuration error (KILN_VALIDATION: node-opcua's W09 refusal) fails the same way
        // until the options change: not retried; the next repair or subscribe() tries again.
        if (!(KilnError.is(error) && !error.retryable)) this.#scheduleRetry();
        throw error;
      }
    });
    this.#queue = run.catch(() => undefined);
    // Every later ensure() runs in the background: its failure is reported on the tags, as no
    // subscribe() call hears it.
    void run.then(
      () => {
        this.#background = true;
      },
      () => undefined,
    );
    return run;
  }

  /**
   * A subscription slot was freed on the server (an orphan deleted): a group waiting on its
   * retry backoff without a subscription tries again now (docs/adr/0022, amendment fix13k-slots).
   */
  retryNow(): void {
    if (this.#closed || this.#subscription || !this.#retryTimer) return;
    this.#cancelRetry();
    this.ensure().catch((error: unknown) => {
      this.#context.logger.warn({ err: error }, "re-creating the OPC UA subscription failed; will retry");
    });
  }

  /** The connection dropped (`reason`: why): report every tag `uncertain` (last value) and stop retrying. */
  connectionLost(reason?: string): void {
    this.#cancelRetry();
    const now = this.#context.clock.now();
    for (const entry of this.#entries) {
      entry.liveSinceLoss = false;
      entry.unreadReason = undefined;
      // The outage's reason replaces a refusal the tag showed: a refusal after the repair is
      // delivered again, not hidden behind the outage (adv13j LOW-3; docs/adr/0022, amendment fix13k-slots).
      entry.reportedStatus = undefined;
    }
    this.#currentUnread = true;
    this.#readPending = false;
    this.#losses++;
    // A loss while the read of current values was out may be that read's doing (a server too slow
    // at it, taken for a stalled link): it counts as a failed read, so the next waits for its
    // backoff instead of being sent again at once (docs/adr/0022, amendment fix13w).
    if (this.#readingCurrent) this.#readFailed();
    else this.#resetReadBackoff();
    this.#emit(this.#entries.map((entry) => staleSample(entry.tag, entry.lastValue, now, reason)));
  }

  /**
   * The connection is gone for good (the server refused the identity: no more reconnects): report
   * every tag `bad` (BadNoCommunication) with `reason`, not the last value as usable, and stop retrying.
   */
  connectionFailed(reason: string): void {
    this.#cancelRetry();
    this.#cancelWatchdog();
    this.#readPending = false;
    this.#losses++;
    this.#resetReadBackoff();
    const now = this.#context.clock.now();
    this.#emit(
      this.#entries.map((entry) => {
        entry.reportedStatus = QualityCodes.BadNoCommunication;
        return badSample(entry.tag, QualityCodes.BadNoCommunication, reason, now);
      }),
    );
  }

  /**
   * Stops every delivery and, with `deleteOnServer` (the default), deletes the subscription on
   * the server, best effort. The driver passes false when it is about to close the session,
   * which deletes the session's subscriptions anyway.
   *
   * Closed while the connection is down, the subscription is taken out of node-opcua's publish
   * engine at once (else node-opcua re-creates it when it repairs the session, next to the one
   * the caller subscribes anew) and its server-side id is handed to `deleteLater`: a server that
   * stayed up still holds it.
   */
  async close(deleteOnServer = true): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelRetry();
    this.#cancelWatchdog();
    this.#buffer = [];
    const subscription = this.#subscription;
    this.#subscription = undefined;
    for (const entry of this.#entries) entry.item = undefined;
    if (deleteOnServer && subscription) await this.#delete(subscription);
  }

  /** Deletes `subscription` on the server now, or once the connection is repaired when it is down. */
  async #delete(subscription: ClientSubscription): Promise<void> {
    const subscriptionId = subscription.subscriptionId;
    const deleted = subscription.terminate().catch((error: unknown) => {
      this.#context.logger.debug({ err: error }, "deleting the OPC UA subscription failed");
    });
    if (this.#context.connection()) {
      await deleted;
    } else if (Number.isInteger(subscriptionId) && subscriptionId > 0 && subscriptionId < PENDING_SUBSCRIPTION_ID) {
      this.#context.deleteLater(subscriptionId);
    }
  }

  async #ensureNow(connection: SubscriptionConnection | undefined): Promise<void> {
    if (this.#closed || !connection || connection.retired?.aborted) return;
    this.#cancelRetry();

    if (
      this.#subscription?.subscriptionId === PENDING_SUBSCRIPTION_ID ||
      (connection.session as unknown as { isReconnecting?: boolean }).isReconnecting === true
    ) {
      // node-opcua is re-creating it after a repair: dropping it now would leave its copy on the server.
      this.#scheduleRetry();
      return;
    }
    const subscriptionLost =
      this.#subscription !== undefined &&
      (this.#session !== connection.session ||
        !this.#subscription.isActive ||
        // node-opcua's repair failed to re-create it (BadTooManySubscriptions...): it keeps the
        // old id but no longer receives anything for it.
        !heldSubscriptionIds(connection.session).has(this.#subscription.subscriptionId));
    if (subscriptionLost) this.#dropSubscription();

    if (this.#generation !== connection.generation) {
      this.#generation = connection.generation;
      await this.#resolveNodeIds(connection);
    }
    // The table is read Good on this session and every item re-resolved against it.
    if (connection.namespacesUnread === undefined) this.#tableUnverified = false;
    const unconfirmed: Entry[] = [];
    for (const entry of this.#entries) {
      if (entry.item && !entry.item.statusCode.isGood()) {
        // node-opcua re-created it after a reconnect and the server refused it this time.
        this.#reportFailure(entry, entry.item.statusCode.value, "monitored item not re-created");
        this.#detach(entry);
      } else if (entry.item && entry.confirmedOn !== this.#subscription?.subscriptionId) {
        unconfirmed.push(entry);
      }
    }
    if (unconfirmed.length > 0) this.#notRecreated(unconfirmed);

    if (!this.#subscription) {
      const created = await this.#createSubscription(connection);
      if (this.#closed || connection.retired?.aborted) {
        // Closed while the server was creating it: nobody else will delete it. On a connection
        // given up meanwhile, the work has left the queue and a newer ensure() owns the group: it is
        // deleted (best effort; the server deletes it with its session otherwise).
        await this.#delete(created);
        return;
      }
      this.#subscription = created;
      this.#established = true;
      this.#reportedRecreation = undefined;
    }

    const pending = this.#entries.filter((entry) => entry.item === undefined && entry.nodeId !== undefined);
    if (pending.length > 0) await this.#createItems(connection, this.#subscription, pending);
    if (connection.retired?.aborted) return;
    this.#primePublishEngine(connection, false);

    if (this.#entries.some((entry) => entry.item === undefined)) this.#scheduleRetry();
    else this.#retryAttempt = 0;

    // A live Publish answer came while the read of current values could not be sent (a value
    // withheld for want of the namespace table, or the connection still being repaired): the group
    // is bound to this connection now, so it is sent at once (fix13n-withheld).
    if (this.#readPending) {
      this.#readPending = false;
      this.#deliversAgain();
    }
  }

  /**
   * The subscription answered a Publish live (a keep-alive or a notification, not a replay). After
   * a loss, tags no live notification has reached since get their current value read once: a value
   * unchanged since before the outage is current, but a server that does not resend values when a
   * session is re-activated (the spec asks that only of TransferSubscriptions) sends no
   * notification for it, and a replayed one is history. Not before the subscription delivers again:
   * a read value is good only while a working subscription keeps it current (docs/adr/0022,
   * amendment fix13k).
   */
  #deliversAgain(): void {
    if (!this.#currentUnread || this.#readingCurrent || this.#closed) return;
    // After a failed read, the next one waits for its backoff: a server refusing the Read is not
    // asked again at every Publish answer (docs/adr/0022, amendment fix13o).
    if (this.#context.clock.now() < this.#readNotBefore) return;
    const connection = this.#context.connection();
    if (
      !connection ||
      connection.session !== this.#session ||
      // Not bound to the connection's current namespace table (an ensure() is due): a NodeId of an
      // nsu= tag may carry another server run's index.
      this.#generation !== connection.generation ||
      this.#tableUnverifiedFor(connection)
    ) {
      // The subscription delivers, but the read must wait for the group's next ensure(), which
      // sends it (fix13n-withheld).
      this.#readPending = true;
      return;
    }
    this.#readingCurrent = true;
    void this.#readCurrentValues(connection).finally(() => {
      this.#readingCurrent = false;
    });
  }

  /**
   * Reads the current value of every tag no live notification has reached since the last loss (its
   * item works on the server). The read is delivered only to tags still without a live value when
   * it answers; a replay that comes after it is not delivered. A Good or Uncertain result is
   * delivered and the tag is done. A tag the read gives no usable value stays `uncertain` (last
   * value) with the reason (the per-node status, a missing result, or the Read's refusal) and is
   * read again at a later live Publish answer, on the monitored-item retry backoff: its monitored
   * item works, so a value unchanged since the outage gets no notification, and a bad read result
   * delivered as the tag's value would stay bad forever (docs/adr/0022, amendment fix13o).
   */
  async #readCurrentValues(connection: SubscriptionConnection): Promise<void> {
    // An item no CreateMonitoredItems result confirmed on the current subscription is not on the
    // server: its value would not be kept current (fix13q).
    const subscriptionId = this.#subscription?.subscriptionId;
    const waiting = this.#entries.filter(
      (entry) =>
        !entry.liveSinceLoss &&
        entry.item !== undefined &&
        entry.confirmedOn === subscriptionId &&
        entry.nodeId !== undefined,
    );
    const losses = this.#losses;
    const perRead = connection.limits?.maxNodesPerRead || waiting.length;
    let unread = false;
    for (let start = 0; start < waiting.length; start += perRead) {
      const chunk = waiting.slice(start, start + perRead);
      let values: readonly (DataValue | undefined)[];
      try {
        // Upkeep: bounded by the link stall bound, not requestMs, unless a stall was declared on
        // it before (opcua-request-origin.ts; docs/adr/0022, amendment fix13w).
        values = await asUpkeepCall(CURRENT_VALUES_READ, () =>
          connection.session.read(
            chunk.map((entry) => ({ nodeId: entry.nodeId!, attributeId: AttributeIds.Value })),
            0,
          ),
        );
      } catch (error) {
        if (this.#closed || this.#losses !== losses) return;
        this.#readRefused(error, waiting.slice(start));
        return;
      }
      // Lost again while reading: the answer may predate the new loss.
      if (this.#closed || this.#losses !== losses) return;
      const now = this.#context.clock.now();
      const samples: Sample[] = [];
      // Results come in the order of the nodes (OPC UA Part 4 5.10.2); an answer with another
      // count cannot be attributed to tags, so none of it is delivered.
      const complete = values.length === chunk.length;
      chunk.forEach((entry, index) => {
        if (entry.liveSinceLoss) return;
        const dataValue = complete ? values[index] : undefined;
        if (!dataValue || dataValue.statusCode.isBad()) {
          unread = true;
          const why = dataValue
            ? `answered ${statusNameOf(dataValue.statusCode.value)} for it`
            : `gave ${values.length} results for ${chunk.length} nodes`;
          const sample = this.#unreadSample(entry, `the read of the current value after a repair ${why}`, now);
          if (sample) samples.push(sample);
          return;
        }
        entry.liveSinceLoss = true;
        entry.unreadReason = undefined;
        const sample = sampleFromDataValue(entry.tag, dataValue, now);
        if (sample.value !== null) entry.lastValue = sample.value;
        samples.push(sample);
      });
      this.#emit(samples);
    }
    if (unread) {
      this.#readFailed();
      return;
    }
    this.#currentUnread = false;
    this.#resetReadBackoff();
  }

  /**
   * The server refused a whole read of current values (a ServiceFault such as BadTooManyOperations
   * or BadServiceUnsupported, or the call failed): the tags of `entries` still without a live
   * value stay `uncertain` with the reason, logged once per distinct reason, and the read waits
   * for its backoff ({@link #readFailed}).
   */
  #readRefused(error: unknown, entries: readonly Entry[]): void {
    const status = statusOfError(error);
    const why = status?.statusName ?? (error instanceof Error ? error.message : String(error));
    const reason = `the read of current values after a repair failed (${why})`;
    if (this.#readRefusal === reason) {
      this.#context.logger.debug({ err: error }, `${reason}; read again on a backoff`);
    } else {
      this.#readRefusal = reason;
      this.#context.logger.warn(
        { err: error, statusName: status?.statusName, tags: entries.length },
        `${reason}; the tags stay uncertain and are read again on a backoff`,
      );
    }
    const now = this.#context.clock.now();
    const samples: Sample[] = [];
    for (const entry of entries) {
      if (entry.liveSinceLoss) continue;
      const sample = this.#unreadSample(entry, reason, now);
      if (sample) samples.push(sample);
    }
    this.#emit(samples);
    this.#readFailed();
  }

  /**
   * The tag's last value as `uncertain` with `reason` (read again on a backoff), unless that reason
   * was delivered already.
   */
  #unreadSample(entry: Entry, reason: string, now: number): Sample | undefined {
    const full = `${reason}; read again on a backoff`;
    if (entry.unreadReason === full) return undefined;
    entry.unreadReason = full;
    return staleSample(entry.tag, entry.lastValue, now, full);
  }

  /** A read of current values left tags without a value: the next one waits for the retry backoff. */
  #readFailed(): void {
    this.#readAttempt++;
    this.#readNotBefore = this.#context.clock.now() + this.#retryDelay(this.#readAttempt);
  }

  /** The wait before retry `attempt` (1, 2...): the driver kit's capped backoff with {@link RETRY_JITTER}. */
  #retryDelay(attempt: number): number {
    return reconnectDelay(attempt, { ...this.#context.retry, jitter: RETRY_JITTER }, this.#context.random);
  }

  #resetReadBackoff(): void {
    this.#readAttempt = 0;
    this.#readNotBefore = 0;
    this.#readRefusal = undefined;
  }

  /**
   * Whether an `nsu=` item of this group node-opcua re-created on `connection`'s session is still
   * bound to an index the table read Good on it has not confirmed ({@link #tableUnverified}; an
   * unread table unbinds every `nsu=` item, so a read skips them).
   */
  #tableUnverifiedFor(connection: SubscriptionConnection): boolean {
    return this.#tableUnverified && connection.namespacesUnread === undefined;
  }

  async #resolveNodeIds(connection: SubscriptionConnection): Promise<void> {
    const now = this.#context.clock.now();
    const moved: ClientMonitoredItemBase[] = [];
    for (const entry of this.#entries) {
      const problem = namespaceProblem(entry.address, connection);
      const nodeId = problem ? undefined : resolveNodeAddress(entry.address, connection);
      if (entry.item && (!nodeId || entry.item.itemToMonitor.nodeId.toString() !== nodeId.toString())) {
        if (entry.item.statusCode.isGood()) moved.push(entry.item);
        this.#detach(entry);
      }
      entry.nodeId = nodeId;
      if (problem) this.#emitFailure(entry, badSample(entry.tag, problem.statusCode, problem.reason, now));
    }
    if (moved.length > 0 && this.#subscription?.isActive) {
      await Promise.all(moved.map((item) => item.terminate().catch(() => undefined)));
    }
  }

  async #createSubscription(connection: SubscriptionConnection): Promise<ClientSubscription> {
    // Publishing interval bounded and decoupled from the items' sampling interval, so keep-alive
    // and lifetime stay short for slow groups too (docs/adr/0022, amendment fix13c).
    const timing = subscriptionTiming(
      this.#options.samplingIntervalMs,
      connection.session.timeout,
      this.#context.timing,
    );
    // node-opcua checks the *revised* keep-alive period (publishing interval × max keep-alive
    // count) against the session timeout inside its CreateSubscription response callback and
    // throws there (NODE-OPCUA-W09) when a server revised the interval far upwards: the promise
    // never settled and every retry leaked a subscription on the server (adv13 HIGH-1). The
    // requested values pass the same check (subscriptionTiming); for the revised ones node-opcua
    // only logs its warning, and the subscription is logged below. The flag is reset by
    // node-opcua after each response (docs/adr/0022, amendment fix13d).
    ClientSubscription.ignoreNextWarning = true;
    const subscription = await startSubscription(connection, {
      requestedPublishingInterval: timing.publishingIntervalMs,
      requestedMaxKeepAliveCount: timing.maxKeepAliveCount,
      requestedLifetimeCount: timing.lifetimeCount,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 0,
    });
    this.#session = connection.session;
    if (timing.limitedBySession) {
      this.#context.logger.warn(
        { publishingIntervalMs: timing.publishingIntervalMs, sessionTimeoutMs: connection.session.timeout },
        "the OPC UA server granted a session timeout below three publishing intervals; publishing more often to fit it",
      );
    }
    await this.#shortenRevisedKeepAlive(subscription, timing);
    const revisedKeepAliveMs = subscription.publishingInterval * subscription.maxKeepAliveCount;
    if (revisedKeepAliveMs > connection.session.timeout) {
      this.#context.logger.warn(
        {
          publishingIntervalMs: subscription.publishingInterval,
          maxKeepAliveCount: subscription.maxKeepAliveCount,
          sessionTimeoutMs: connection.session.timeout,
        },
        "the OPC UA server revised the subscription's keep-alive period above the session timeout; the session is kept alive by its own keep-alive requests",
      );
    }
    unguessableClientHandles(subscription);
    subscription.on("terminated", () => {
      if (this.#closed || subscription !== this.#subscription) return;
      this.#context.logger.warn("the OPC UA subscription was terminated; re-creating it");
      this.#scheduleRetry();
    });
    subscription.on("internal_error", (error: Error) => {
      this.#context.logger.warn({ err: error }, "OPC UA subscription internal error");
    });
    // A subscription the server deleted or gave to another session while the session stays up
    // is never reported by node-opcua: its values would stay frozen but good. Anything the
    // server publishes for it (a notification or a keep-alive) proves it alive.
    const alive = (message?: object) => {
      if (subscription === this.#subscription || this.#subscription === undefined) {
        this.#silentExpiries = 0;
        this.#armWatchdog(subscription);
      }
      // A live Publish answer (not a replay) proves the subscription delivers again after a loss:
      // only now is a value read for the tags still without a live one kept current (fix13k).
      if (subscription === this.#subscription && !(message && isReplayedMessage(message))) this.#deliversAgain();
    };
    subscription.on("keepalive", () => alive());
    subscription.on("received_notifications", (message: object) => alive(message));
    this.#armWatchdog(subscription);
    return subscription;
  }

  /**
   * A server that revised the publishing interval upwards keeps the requested keep-alive count,
   * so its keep-alive period (interval × count) grows by the same factor (a 100 ms request
   * revised to 1 s: 50 s instead of 5 s), and with it the keep-alive watchdog and the lifetime
   * of an orphan. The counts are asked again for the revised interval with ModifySubscription
   * (OPC UA Part 4 5.13.3): keep-alive `max(3, floor(requested keep-alive period / revised
   * interval))`, lifetime 3 × that. Best effort: on failure the revised values stay, and the
   * watchdog follows them (docs/adr/0022, amendment fix13e).
   */
  async #shortenRevisedKeepAlive(subscription: ClientSubscription, timing: SubscriptionTiming): Promise<void> {
    const interval = Number(subscription.publishingInterval);
    if (!(interval > timing.publishingIntervalMs)) return;
    const wantedMs = timing.publishingIntervalMs * timing.maxKeepAliveCount;
    const count = Math.max(3, Math.floor(wantedMs / interval));
    if (count >= subscription.maxKeepAliveCount) return;
    try {
      await subscription.modify({
        requestedPublishingInterval: interval,
        requestedMaxKeepAliveCount: count,
        requestedLifetimeCount: 3 * count,
        maxNotificationsPerPublish: 0,
        priority: 0,
      });
      this.#context.logger.info(
        { publishingIntervalMs: subscription.publishingInterval, maxKeepAliveCount: subscription.maxKeepAliveCount },
        "the OPC UA server revised the publishing interval upwards; keep-alive count lowered to keep the keep-alive period",
      );
    } catch (error) {
      this.#context.logger.debug({ err: error }, "lowering the keep-alive count of the OPC UA subscription failed");
    }
  }

  #armWatchdog(subscription: ClientSubscription): void {
    this.#cancelWatchdog();
    if (this.#closed) return;
    const periodMs = Math.max(keepAliveWatchdogMs(subscription), this.#context.connection()?.silenceBoundMs ?? 0);
    this.#watchdog = this.#context.clock.setTimeout(() => {
      this.#watchdog = undefined;
      this.#watchdogExpired(subscription, periodMs);
    }, periodMs);
  }

  #cancelWatchdog(): void {
    if (!this.#watchdog) return;
    this.#context.clock.clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
  }

  /**
   * Nothing arrived for `subscription` within its watchdog period while the session is up: the
   * server no longer publishes it (deleted, transferred away). Its tags go bad with the reason,
   * it is deleted best effort and re-created like a subscription lost in a repair.
   */
  #watchdogExpired(subscription: ClientSubscription, periodMs: number): void {
    if (this.#closed || subscription !== this.#subscription) return;
    const connection = this.#context.connection();
    if (
      !connection ||
      connection.session !== this.#session ||
      (connection.session as unknown as { isReconnecting?: boolean }).isReconnecting === true
    ) {
      // The connection's own loss path owns this case.
      this.#armWatchdog(subscription);
      return;
    }
    // The session's publish engine is not trusted: node-opcua may have stopped sending Publish
    // requests (its count of active subscriptions drifted, or it stayed suspended after a failed
    // repair), and a subscription re-created on it would stay silent too (docs/adr/0022,
    // amendment fix13r). It is corrected first; a second expiry in a row opens a new session.
    this.#silentExpiries++;
    const found = this.#primePublishEngine(connection, true);
    const escalate = opensNewSession(this.#silentExpiries);
    const silence = `no notification or keep-alive from the OPC UA subscription for ${periodMs} ms (2 keep-alive periods, at least the link silence bound${this.#silentExpiries > 1 ? `; ${this.#silentExpiries} times in a row` : ""})`;
    const reason = escalate
      ? `${silence}; not trusting the session's publishing: opening a new session`
      : `${silence}; re-creating it`;
    this.#context.logger.warn(
      { subscriptionId: subscription.subscriptionId, periodMs, expiries: this.#silentExpiries, publishEngine: found },
      reason,
    );
    const now = this.#context.clock.now();
    this.#emit(
      this.#entries.map((entry) => {
        entry.reportedStatus = QualityCodes.BadNoCommunication;
        return badSample(entry.tag, QualityCodes.BadNoCommunication, reason, now);
      }),
    );
    this.#dropSubscription();
    // The driver re-creates every subscription on the new session.
    if (escalate && this.#context.publishingStalled(reason)) return;
    this.ensure().catch((error: unknown) => {
      this.#context.logger.warn({ err: error }, "re-creating the OPC UA subscription failed; will retry");
    });
  }

  /**
   * Corrects node-opcua's publish engine of `connection`'s session ({@link primePublishEngine}) and
   * logs what was wrong; `whenIdle`: also when no Publish request is outstanding. Not while
   * node-opcua repairs the session (its repair suspends and resumes the engine itself).
   */
  #primePublishEngine(connection: SubscriptionConnection, whenIdle: boolean): string[] {
    if ((connection.session as unknown as { isReconnecting?: boolean }).isReconnecting === true) return [];
    const found = primePublishEngine(connection.session, { whenIdle });
    if (found.length > 0) {
      this.#context.logger.warn(
        { problems: found },
        `node-opcua's publish engine had stopped sending Publish requests (${found.join("; ")}); corrected`,
      );
    }
    return found;
  }

  async #createItems(
    connection: SubscriptionConnection,
    subscription: ClientSubscription,
    pending: Entry[],
  ): Promise<void> {
    const batchSize = connection.maxMonitoredItemsPerCall > 0 ? connection.maxMonitoredItemsPerCall : pending.length;
    const withDeadband = pending.filter((entry) => this.#deadbandFor(entry) !== undefined);
    const plain = pending.filter((entry) => this.#deadbandFor(entry) === undefined);
    let refusedFilter = false;
    for (const [entries, deadband] of [
      [withDeadband, this.#options.deadband],
      [plain, undefined],
    ] as const) {
      for (let start = 0; start < entries.length; start += batchSize) {
        if (this.#closed || subscription !== this.#subscription || connection.retired?.aborted) return;
        const batch = entries.slice(start, start + batchSize);
        refusedFilter = (await this.#createBatch(connection, subscription, batch, deadband)) || refusedFilter;
      }
    }
    if (refusedFilter && !this.#closed) {
      // Retry the items the server refused for their deadband filter, now without it.
      const retry = pending.filter((entry) => entry.item === undefined && !entry.useDeadband);
      if (retry.length > 0) await this.#createItems(connection, subscription, retry);
    }
  }

  /** Creates one batch of items. Returns true when the server refused some for their deadband filter. */
  async #createBatch(
    connection: SubscriptionConnection,
    subscription: ClientSubscription,
    batch: Entry[],
    deadband: number | undefined,
  ): Promise<boolean> {
    const attempt = this.#nextAttempt++;
    for (const entry of batch) entry.attempt = attempt;
    const parameters: MonitoringParametersOptions = {
      samplingInterval: this.#options.samplingIntervalMs,
      queueSize: this.#options.queueSize ?? 1,
      discardOldest: true,
    };
    if (deadband !== undefined) {
      parameters.filter = new DataChangeFilter({
        trigger: DataChangeTrigger.StatusValue,
        deadbandType: DeadbandType.Absolute,
        deadbandValue: deadband,
      });
    }
    const group = ClientMonitoredItemGroup.create(
      subscription,
      batch.map((entry) => ({ nodeId: entry.nodeId!, attributeId: AttributeIds.Value })),
      parameters,
      TimestampsToReturn.Both,
    );
    group.on("changed", (_item: ClientMonitoredItemBase, dataValue: DataValue, index: number) => {
      const entry = batch[index];
      if (entry && entry.attempt === attempt) this.#onValue(entry, dataValue);
    });
    const failure = await new Promise<Error | undefined>((resolve) => {
      group.once("initialized", () => resolve(undefined));
      group.once("terminated", (error?: Error) => resolve(error ?? new Error("monitored item group terminated")));
    });
    if (this.#closed || subscription !== this.#subscription || connection.retired?.aborted) {
      // Answered after its connection was given up or its subscription dropped: a newer ensure()
      // owns the entries; nothing of this answer is applied to them.
      forgetGroup(subscription, group);
      return false;
    }
    if (failure) {
      const answered = !inDoubt(failure);
      this.#context.logger.warn(
        { err: failure, items: batch.length },
        answered
          ? "creating OPC UA monitored items failed; will retry"
          : "creating OPC UA monitored items got no answer; re-creating the subscription",
      );
      this.#batchFailed(connection, batch, failure, answered);
      // Without an answer the server may hold items nobody knows: only a fresh subscription is certain.
      if (!answered && subscription === this.#subscription) this.#dropSubscription();
      return false;
    }
    let refusedFilter = false;
    batch.forEach((entry, index) => {
      const item = group.monitoredItems[index];
      if (!item) return;
      if (item.statusCode.isGood()) {
        entry.item = item;
        entry.confirmedOn = subscription.subscriptionId;
        entry.reportedStatus = undefined;
        watchConfirmation(entry, item, subscription, () => {
          if (entry.address.namespaceUri !== undefined) this.#tableUnverified = true;
        });
        return;
      }
      const statusName = statusNameOf(item.statusCode.value);
      if (deadband !== undefined && FILTER_REFUSALS.has(statusName)) {
        entry.useDeadband = false;
        refusedFilter = true;
        if (!this.#warnedNoDeadband) {
          this.#warnedNoDeadband = true;
          this.#context.logger.warn(
            { statusName },
            "the server refused the deadband filter; monitoring those tags without a deadband",
          );
        }
        return;
      }
      this.#reportFailure(entry, item.statusCode.value, "monitored item refused");
    });
    if (!group.monitoredItems.some((item) => item.statusCode.isGood())) forgetGroup(subscription, group);
    return refusedFilter;
  }

  #deadbandFor(entry: Entry): number | undefined {
    const deadband = this.#options.deadband;
    if (deadband === undefined || deadband <= 0 || !entry.useDeadband) return undefined;
    return NUMERIC_TYPES.has(entry.tag.dataType) ? deadband : undefined;
  }

  #onValue(entry: Entry, dataValue: DataValue): void {
    if (this.#closed) return;
    if (this.#tableUnverified && entry.address.namespaceUri !== undefined) {
      // Maybe another namespace's node: its value waits for the table. The tag is read once the
      // group is bound to the table (the ensure() that clears the flag sends the read), not at the
      // next live Publish answer: for an unchanged value that is a keep-alive period later
      // (fix13n-withheld).
      this.#context.logger.debug(
        { tag: entry.tag.name },
        "nsu= item value before the namespace table was read; not delivered, read once the table is",
      );
      entry.liveSinceLoss = false;
      this.#currentUnread = true;
      if (!isReplayed(dataValue)) this.#readPending = true;
      return;
    }
    const read = sampleFromDataValue(entry.tag, dataValue, this.#context.clock.now());
    // A notification the server sent again with Republish after a repair is history, never a
    // current good value; one that comes after a live value of the tag is older than it and is
    // not delivered, so it cannot take the place of the current value (docs/adr/0022, amendment
    // fix13k).
    const replayed = isReplayed(dataValue);
    if (replayed && entry.liveSinceLoss) {
      this.#context.logger.debug(
        { tag: entry.tag.name, timestamp: read.timestamp },
        "replayed OPC UA notification after a live one; not delivered (older than the current value)",
      );
      return;
    }
    if (!replayed) {
      entry.liveSinceLoss = true;
      entry.unreadReason = undefined;
    }
    const sample = replayed ? replayedSample(read) : read;
    if (sample.value !== null) entry.lastValue = sample.value;
    this.#emit([sample]);
  }

  #reportFailure(entry: Entry, statusCode: number, what: string): void {
    const code = statusCode >>> 0;
    if (entry.reportedStatus === code) return;
    const statusName = statusNameOf(code);
    this.#context.logger.warn({ tag: entry.tag.name, address: entry.address.text, statusName }, `${what}; will retry`);
    this.#emitFailure(entry, badSample(entry.tag, code, statusName, this.#context.clock.now()));
  }

  /**
   * A CreateMonitoredItems of `batch` failed as a whole: refused with a ServiceFault
   * (BadTooManyMonitoredItems, BadTooManyOperations, BadServerTooBusy...) or not answered. Every
   * tag of the batch is delivered `bad` with the service result (BadTimeout without one) and the
   * reason, once per distinct status, before the retry on the monitored-item backoff, as a
   * per-item refusal is. Not when the session is gone meanwhile: the connection loss reports the
   * tags (last value `uncertain`), and a repair re-creates them (docs/adr/0022, amendment fix13af).
   */
  #batchFailed(connection: SubscriptionConnection, batch: readonly Entry[], failure: Error, answered: boolean): void {
    if (this.#closed) return;
    const current = this.#context.connection();
    if (!current || current.session !== connection.session) return;
    if ((connection.session as unknown as { isReconnecting?: boolean }).isReconnecting === true) return;
    const status = statusOfError(failure);
    if (!answered && status !== undefined && !TIMEOUTS.has(status.statusName)) return;
    const code = (answered && status ? status.statusCode : QualityCodes.BadTimeout) >>> 0;
    const reason = answered
      ? `the OPC UA server refused creating its monitored item (CreateMonitoredItems refused as a whole: ${statusNameOf(code)}); retrying`
      : `no answer from the OPC UA server to CreateMonitoredItems (${status?.statusName ?? firstLine(failure)}); re-creating the subscription and retrying`;
    const now = this.#context.clock.now();
    for (const entry of batch) {
      if (entry.reportedStatus !== code) this.#emitFailure(entry, badSample(entry.tag, code, reason, now));
    }
  }

  /**
   * The group has no subscription and creating one failed: every tag turns `bad` with the
   * server's status (or BadNoCommunication) and the reason, once per distinct status, and the
   * driver is told.
   */
  #recreationFailed(error: unknown): void {
    const status = statusOfError(error);
    const code = (status?.statusCode ?? QualityCodes.BadNoCommunication) >>> 0;
    if (this.#reportedRecreation === code) return;
    this.#reportedRecreation = code;
    const why = status?.statusName ?? (error instanceof Error ? error.message : String(error));
    const reason = `the OPC UA subscription could not be re-created (${why}); retrying`;
    this.#context.logger.warn({ err: error, tags: this.#entries.length }, reason);
    const now = this.#context.clock.now();
    this.#emit(
      this.#entries.map((entry) => {
        entry.reportedStatus = code;
        return badSample(entry.tag, code, reason, now);
      }),
    );
    this.#context.recreationFailed(error);
  }

  #emitFailure(entry: Entry, sample: Sample): void {
    entry.reportedStatus = sample.quality.code;
    this.#emit([sample]);
  }

  /**
   * node-opcua re-created the subscription under a new id after a repair, but no CreateMonitoredItems
   * result was applied to the items of `entries` (its one Read of 12 operation limits failed on a
   * server with a lower MaxNodesPerRead, or the server refused the CreateMonitoredItems): they keep
   * their old Good status while the server holds none of them, and their values would stay frozen.
   * They turn `uncertain` (last value) with the reason, are forgotten locally (also inside
   * node-opcua's subscription, so a later repair does not re-create them) and created again on the
   * driver's own path with its retry backoff (docs/adr/0022, amendment fix13q).
   */
  #notRecreated(entries: readonly Entry[]): void {
    const reason =
      "node-opcua re-created the OPC UA subscription after a repair but not this monitored item; creating it again";
    this.#context.logger.warn(
      { subscriptionId: this.#subscription?.subscriptionId, tags: entries.map((entry) => entry.tag.name) },
      reason,
    );
    const now = this.#context.clock.now();
    this.#emit(entries.map((entry) => staleSample(entry.tag, entry.lastValue, now, reason)));
    for (const entry of entries) {
      entry.liveSinceLoss = false;
      this.#detach(entry);
    }
  }

  /** Forgets a monitored item locally without a server call (its server-side id may be stale). */
  #detach(entry: Entry): void {
    const item = entry.item;
    entry.item = undefined;
    entry.confirmedOn = undefined;
    entry.attempt = 0;
    if (!item) return;
    item.removeAllListeners();
    const subscription = this.#subscription as unknown as { _removeMonitoredItem?: (handle: number) => void };
    subscription?._removeMonitoredItem?.(item.monitoringParameters.clientHandle);
  }

  #dropSubscription(): void {
    this.#cancelWatchdog();
    // Its Publish answers proved the old subscription only: the next one's first answer triggers the read.
    this.#readPending = false;
    for (const entry of this.#entries) {
      entry.item = undefined;
      entry.confirmedOn = undefined;
      entry.attempt = 0;
    }
    const old = this.#subscription;
    this.#subscription = undefined;
    this.#session = undefined;
    // Even when node-opcua calls it inactive: a copy may live on a server that stayed up.
    if (old) void this.#delete(old);
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#retryAttempt++;
    const delay = this.#retryDelay(this.#retryAttempt);
    this.#retryTimer = this.#context.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.ensure().catch((error: unknown) => {
        this.#context.logger.warn({ err: error }, "re-creating the OPC UA subscription failed; will retry");
        this.#scheduleRetry();
      });
    }, delay);
  }

  #cancelRetry(): void {
    if (!this.#retryTimer) return;
    this.#context.clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #emit(samples: Sample[]): void {
    if (this.#closed || samples.length === 0) return;
    for (const sample of samples) this.#buffer.push(sample);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // node-opcua dispatches one publish response item by item: deliver them as one batch.
    queueMicrotask(() => {
      this.#flushScheduled = false;
      const batch = this.#buffer;
      this.#buffer = [];
      if (this.#closed || batch.length === 0) return;
      try {
        this.#onSamples(batch);
      } catch (error) {
        this.#context.logger.error({ err: error }, "the subscription's onSamples handler threw");
      }
    });
  }
}

/**
 * The keep-alive watchdog period of `subscription`: twice its keep-alive period, the revised
 * publishing interval (ms) times the revised max keep-alive count. A server sends a
 * notification or a keep-alive at least once per keep-alive period (OPC UA Part 4 §5.13.1), so
 * nothing for two periods while the session is up means it no longer publishes the
 * subscription (docs/adr/0022, amendment fix13d). The watchdog uses at least the link silence
 * bound ({@link SubscriptionConnection.silenceBoundMs}; amendment fix13f).
 */
function keepAliveWatchdogMs(subscription: ClientSubscription): number {
  const interval = Number(subscription.publishingInterval) || 1_000;
  const count = Number(subscription.maxKeepAliveCount) || 10;
  return 2 * interval * count;
}

/**
 * Records on `entry` each Good CreateMonitoredItems result node-opcua applies to `item` when it
 * re-creates `subscription` after a repair ({@link Entry.confirmedOn}). node-opcua has no event for
 * it: its `_applyResult` is wrapped. Without that method no repair confirms the item, and it is
 * created again by the driver after each repair that changes the subscription id.
 */
function watchConfirmation(
  entry: Entry,
  item: ClientMonitoredItemBase,
  subscription: ClientSubscription,
  recreated: () => void,
): void {
  const internals = item as unknown as { _applyResult?: (result: { statusCode: StatusCode }) => void };
  const applyResult = internals._applyResult;
  if (typeof applyResult !== "function") return;
  internals._applyResult = function (this: unknown, result: { statusCode: StatusCode }): void {
    // node-opcua re-created it with the NodeId bound to the table of the session it was created on.
    if (entry.item === item) recreated();
    applyResult.call(this, result);
    if (entry.item === item && result.statusCode.isGood()) entry.confirmedOn = subscription.subscriptionId;
  };
}

/**
 * Drops a group none of whose items the server accepted, so retries do not pile up empty
 * groups inside node-opcua's subscription (node-opcua has no public call for this).
 */
function forgetGroup(subscription: ClientSubscription, group: ClientMonitoredItemGroup): void {
  try {
    (subscription as unknown as { _removeGroup?: (group: ClientMonitoredItemGroup) => void })._removeGroup?.(group);
  } catch {
    // Already gone: nothing to forget.
  }
}

/**
 * Numbers the monitored items of `subscription` from a random start instead of node-opcua's 1, 2,
 * 3...: node-opcua delivers a notification to the item with its clientHandle, so a subscription of
 * another client that numbers from 1 (node-opcua does) could otherwise feed its values to Kiln's
 * items if it ever came into Kiln's session. None does (`refuseSubscriptionTransfers`); this is
 * the second wall (docs/adr/0022, amendment fix13). The handles stay below 0xffffffff, which
 * node-opcua reserves for "not yet created".
 */
function unguessableClientHandles(subscription: ClientSubscription): void {
  const internals = subscription as unknown as { _nextClientHandle?: () => number };
  if (typeof internals._nextClientHandle !== "function") return;
  let handle = randomInt(0x1000_0000, 0xf000_0000);
  internals._nextClientHandle = () => {
    handle = handle >= 0xffff_fffe ? 1 : handle + 1;
    return handle;
  };
}

/**
 * Whether the `expiries`-th keep-alive watchdog expiry in a row (no Publish answer in between) opens
 * a new session rather than re-creating the subscription on the same one: the 2nd, 4th and 8th,
 * then every 16th, so a server that never answers Publish costs a new session at a falling rate
 * (at most one per 2 watchdog periods, then one per 16), never a storm.
 */
function opensNewSession(expiries: number): boolean {
  return expiries === 2 || expiries === 4 || expiries === 8 || (expiries > 0 && expiries % 16 === 0);
}

/**
 * Creates a subscription on `connection`'s session as node-opcua's `createSubscription2` does, but
 * without its `started` handler, which asserts `subscription.session` and throws inside node-opcua's
 * own event (an uncaught exception, "expecting a valid session") when the answer comes after the
 * session was closed, and then never settles. Rejects at once when the connection is given up
 * (`retired`) or the creation fails; a subscription whose answer comes after that is terminated
 * (deleted on the server while its session still works, else only taken out of node-opcua's publish
 * engine: the server deletes it with the session). adv13g HIGH; docs/adr/0022, amendment fix13h.
 */
function startSubscription(
  connection: SubscriptionConnection,
  options: ClientSubscriptionOptions,
): Promise<ClientSubscription> {
  const subscription = ClientSubscription.create(connection.session, options);
  return new Promise<ClientSubscription>((resolve, reject) => {
    let settled = false;
    let stopWaiting = (): void => undefined;
    const started = (): void => {
      if (settled) return;
      settled = true;
      stopWaiting();
      resolve(subscription);
    };
    const failed = (error: Error): void => {
      if (settled) return;
      settled = true;
      stopWaiting();
      subscription.removeListener("started", started);
      reject(error);
    };
    subscription.once("started", started);
    // Kept, as node-opcua's own createSubscription2 keeps its: an "error" with no listener would throw.
    subscription.on("error", failed);
    const retired = connection.retired;
    if (!retired) return;
    stopWaiting = onAbort(retired, () => {
      if (settled) return;
      settled = true;
      subscription.removeListener("started", started);
      // A late answer still makes it: it is not Kiln's any more.
      subscription.once("started", () => {
        subscription.terminate().catch(() => undefined);
      });
      reject(abortError(retired, "the OPC UA CreateSubscription"));
    });
  });
}

/** Statuses of a request that got no answer in time (the session itself may be fine). */
const TIMEOUTS = new Set(["BadTimeout", "BadRequestTimeout"]);

function firstLine(error: Error): string {
  return (error.message.split("\n")[0] ?? "").trim();
}

/** True when `error` does not prove the server refused the request: it may have carried it out. */
function inDoubt(error: unknown): boolean {
  const status = statusOfError(error);
  return status === undefined || isConnectionLoss(status);
}
