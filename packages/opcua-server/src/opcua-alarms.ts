import type {
  AlarmPriority,
  AlarmSnapshot,
  AlarmState,
  Clock,
  ControlSystem,
  KilnEvents,
  Logger,
  Principal,
  TimerHandle,
} from "@kiln/core";
import { KilnError, KilnValidationError } from "@kiln/core";
import type { Namespace, UAObject, UAVariable } from "node-opcua-address-space";
import type { ISessionBase, ISessionContext } from "node-opcua-address-space-base";
import type { StatusCode } from "node-opcua-status-code";
import type { Variant } from "node-opcua-variant";
import type { ServerRuntime } from "./opcua-server-runtime-loader";
import { conditionIdentifier } from "./opcua-address-space";
import { statusCodeOfError } from "./opcua-status";

/** The alarm part of a `ControlSystem` the server uses: snapshots, and the checked, audited alarm commands. */
export type AlarmServedSystem = Pick<
  ControlSystem,
  "bus" | "listAlarms" | "acknowledgeAlarm" | "shelveAlarm" | "unshelveAlarm" | "setAlarmInService"
>;

/**
 * OPC UA Severity (1..1000, OPC UA Part 9, 5.5.2; Part 5, 6.4.2) of each Kiln alarm priority:
 * the middle of the Part 9 bands High (801-1000), Medium High (601-800), Medium (401-600) and
 * Medium Low (201-400), so a client's filter on a band keeps Kiln's order.
 *
 * | Kiln priority | meaning  | Severity |
 * |---------------|----------|----------|
 * | 1             | critical | 900      |
 * | 2             | high     | 700      |
 * | 3             | medium   | 500      |
 * | 4             | low      | 300      |
 */
export const OPCUA_SEVERITY_OF_PRIORITY: Readonly<Record<AlarmPriority, number>> = Object.freeze({
  1: 900,
  2: 700,
  3: 500,
  4: 300,
});

/** The longest shelve (ms) Kiln allows, 365 days (ISA-18.2 shelving is time-limited); served as MaxTimeShelved. */
const MAX_SHELVE_MS = 365 * 24 * 60 * 60 * 1_000;

/** The LimitState (ExclusiveLimitStateMachineType) of an active limit alarm, by Kiln kind. */
const LIMIT_STATE_OF_KIND = { HI: "High", HIHI: "HighHigh", LO: "Low", LOLO: "LowLow" } as const;

/** The option of `instantiateExclusiveLimitAlarm` that carries each kind's setpoint. */
const LIMIT_OPTION_OF_KIND = {
  HI: "highLimit",
  HIHI: "highHighLimit",
  LO: "lowLimit",
  LOLO: "lowLowLimit",
} as const;

/** What {@link serveAlarms} needs from the server. */
export interface AlarmServingContext {
  readonly runtime: ServerRuntime;
  readonly namespace: Namespace;
  /** The machine object: made an event notifier of Server, and the event source of each alarmed tag. */
  readonly notifier: UAObject;
  /** The tag variables by tag name (the ConditionSource of each alarm). */
  readonly variables: ReadonlyMap<string, UAVariable>;
  readonly system: AlarmServedSystem;
  /** The principal a session acts as (the one the host's `identify` gave, else one with no role). */
  principalOf(session: ISessionBase | undefined): Principal;
  /**
   * Refuses a request before it becomes a Kiln command and answers its StatusCode (the server's
   * one refusal path: audited through `system.refuseCommand` with the call's other refusals of
   * its kind): `statusCode`, or `BadUserAccessDenied` for a principal without `permission`.
   */
  refuse(
    principal: Principal,
    request: { permission: string; action: string; target: string; reason: KilnError; statusCode: number },
  ): Promise<number>;
  /**
   * Makes the condition's nodes (it and every node under it) readable, and its events delivered,
   * only to principals that may read `tag`, the alarm's source: its state mirrors the tag's value.
   */
  guardCondition(condition: UAObject, tag: string): void;
  /** Whether `principal` holds `permission` on `target` (the system's role table, as its commands ask). */
  can(principal: Principal, permission: string, target: string): boolean;
  /**
   * The StatusCode the tag's variable serves now (the server's one mapping of a sample's
   * quality, with the stopped system's `UncertainNoCommunicationLastUsableValue`): a condition's
   * Quality.
   */
  qualityOf(tag: string): StatusCode;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** The node-opcua condition members this module drives (typed loosely: node-opcua's Ex types are not exported by name). */
interface Branch {
  setActiveState(value: boolean): void;
  setAckedState(value: boolean): unknown;
  getAckedState(): boolean;
  setRetain(value: boolean): void;
  getRetain(): boolean;
  setEnabledState(value: boolean): void;
  getEnabledState(): boolean;
  setSuppressedState(value: boolean): void;
  setSeverity(value: number): void;
  getSeverity(): number;
  setMessage(value: string): void;
  setQuality(value: StatusCode): void;
  setComment(value: string): void;
  setClientUserId(value: string): void;
  setTime(value: Date): void;
  setReceiveTime(value: Date): void;
  getEventId(): Buffer;
}

interface StateMachine {
  setState(name: string | null): void;
  getCurrentState(): string | null;
}

interface ConditionNode extends UAObject {
  /** BaseEventType's SourceName (Part 5, 6.4.2). */
  sourceName: UAVariable;
  currentBranch(): Branch;
  raiseConditionEvent(branch: Branch, renewEventId: boolean): void;
  findBranchForEventId(eventId: Buffer | null): Branch | null;
  limitState?: StateMachine & UAObject;
  shelvingState: StateMachine &
    UAObject & {
      unshelve: MethodNode;
      timedShelve: MethodNode;
      oneShotShelve: MethodNode;
      unshelveTime?: UAVariable;
    };
  acknowledge: MethodNode;
  addComment: MethodNode;
  enable: MethodNode;
  disable: MethodNode;
  // node-opcua's own evaluation of the input node, switched off (see serveAlarms).
  _onInputDataValueChange(...args: unknown[]): void;
  updateState(): void;
  evaluateConditionsAfterEnabled(): void;
}

interface MethodNode {
  readonly nodeId: { toString(): string };
  bindMethod(handler: MethodHandler): void;
}

/** node-opcua tells a promise handler from a callback one by its arity (2), so every handler is bound through this. */
function bind(method: MethodNode | null | undefined, handler: MethodHandler): void {
  method?.bindMethod((inputs, methodContext) => handler(inputs, methodContext));
}

type MethodResult = { statusCode: StatusCode; outputArguments?: [] };
type MethodHandler = (inputs: Variant[], context: ISessionContext) => Promise<MethodResult>;

interface ServedAlarm {
  readonly id: string;
  readonly tag: string;
  /** The Quality last shown (StatusCode value). */
  quality: number;
  readonly condition: ConditionNode;
  readonly severity: number;
  /** Whether the condition was out of service when last shown (a disabled condition sends no events). */
  disabled: boolean;
  /** Whether it was active when last shown (a new occurrence starts when it becomes active). */
  active: boolean;
  /**
   * The EventIds of the events this condition reported while unacknowledged in its current
   * occurrence (the latest `MAX_OCCURRENCE_EVENT_IDS`): an Acknowledge naming any of them
   * acknowledges that occurrence. Emptied when it is acknowledged or becomes active again.
   */
  readonly unackedEventIds: Buffer[];
  /** The Quality (StatusCode value) of the last event sent. */
  sentQuality: number;
  /** When the last Quality-only event was sent (clock ms), and the timer of the one held back. */
  qualityEventAt: number;
  qualityTimer: TimerHandle | undefined;
}

/**
 * The shortest interval (ms) between two Quality-only events of one condition: a tag whose
 * quality flaps (every scan) made an event each time, each with a new EventId, so an operator's
 * Acknowledge naming the last one received was already stale. A change within the interval is
 * shown at once in the Quality variable and sent in one event at the interval's end (the latest
 * Quality then; none if it is back to the one last sent).
 */
const QUALITY_EVENT_INTERVAL_MS = 1_000;

/** Most EventIds of one occurrence an Acknowledge is accepted for (the latest). */
const MAX_OCCURRENCE_EVENT_IDS = 64;

/** The alarms {@link serveAlarms} serves. */
export interface ServedAlarms {
  /**
   * Shows the tag's StatusCode (`qualityOf`) as the Quality of each of its conditions, called
   * after every update of the tag's variable. A changed Quality of a retained condition that is
   * enabled raises one condition event (OPC UA Part 9, 5.5.2: Quality is a condition field, and
   * events are sent for retained conditions); of any other it is set without an event.
   */
  followQuality(tag: string): void;
  /** Unsubscribes from the bus. */
  dispose(): void;
}

/** What an OPC UA command adds to the event it causes: the client's comment and who sent it. */
interface Annotation {
  readonly comment?: string;
  readonly user: string;
}

/**
 * Serves every Kiln alarm as an OPC UA Part 9 condition (see docs/adr/0033):
 *
 * - numeric alarms (HI, HIHI, LO, LOLO) as `ExclusiveLimitAlarmType` with the one limit of the
 *   definition, BOOL alarms as `OffNormalAlarmType`; NodeId `s=@Alarm.<alarm id>` (escaped: `conditionIdentifier`), organized
 *   in the `Alarms` folder, `HasCondition` from the tag's variable (the SourceNode); the machine
 *   object is an event notifier of Server and the event source of every alarmed tag, so events
 *   reach clients subscribed to Server or to the machine, and ConditionRefresh finds them;
 * - every state (ActiveState, AckedState, Retain, ShelvingState, SuppressedState, EnabledState,
 *   LimitState, Severity) is set from Kiln's alarm snapshot when the bus publishes
 *   `alarm-state-change`, and each change raises one condition event; node-opcua's own
 *   evaluation of the input node is switched off;
 * - Acknowledge, TimedShelve, OneShotShelve, Unshelve, Enable and Disable (on the instances
 *   and on the types) call Kiln's checked alarm commands with the session's principal; a
 *   refusal answers its StatusCode and changes nothing. An Acknowledge naming an EventId the
 *   condition never reported is refused `BadEventIdUnknown`; AddComment and Confirm (Part 9,
 *   5.5.4, 5.7.3) answer `BadNotSupported` (Kiln's alarm engine keeps neither a comment apart
 *   from a command nor a confirmed state). Each of these is authorized (`alarm.acknowledge`)
 *   and audited (`context.refuse`) like the commands: a principal without the permission gets
 *   `BadUserAccessDenied`.
 * - each numeric alarm's limit (HighLimit, HighHighLimit, LowLimit, LowLowLimit) is its
 *   definition's setpoint, readable.
 *
 * - Quality is the StatusCode the tag's variable serves (`qualityOf`), followed on every update
 *   of the variable ({@link ServedAlarms.followQuality}), not only on alarm transitions.
 *
 * @returns the served alarms: their Quality follower and their disposer.
 */
export function serveAlarms(context: AlarmServingContext): ServedAlarms {
  const { runtime, namespace, notifier, system, logger } = context;
  const addressSpace = namespace.addressSpace;
  // ConditionRefresh / ConditionRefresh2 (and node-opcua's condition methods on the types, which
  // bindTypeMethods replaces below): node-opcua's server does not install them by itself.
  addressSpace.installAlarmsAndConditionsService();
  const snapshots = system.listAlarms();
  if (snapshots.length === 0) return { followQuality: () => undefined, dispose: () => undefined };
  const codes = runtime.StatusCodes;

  const server = addressSpace.rootFolder.objects.server;
  notifier.setEventNotifier(1); // SubscribeToEvents
  server.addReference({ referenceType: "HasNotifier", nodeId: notifier });
  const folder = namespace.addObject({
    browseName: "Alarms",
    nodeId: "s=@Alarms",
    typeDefinition: "FolderType",
    organizedBy: notifier,
    description: "Kiln's ISA-18.2 alarms as OPC UA conditions (one per alarm definition).",
  });

  const byNode = new Map<string, ServedAlarm>();
  const byId = new Map<string, ServedAlarm>();
  const byTag = new Map<string, ServedAlarm[]>();
  const sources = new Set<string>();
  const annotations = new Map<string, Annotation>();

  function show(
    served: ServedAlarm,
    snapshot: AlarmSnapshot,
    at: number,
    raise: boolean,
    annotation?: Annotation,
  ): void {
    const { condition } = served;
    const branch = condition.currentBranch();
    const base = baseStateOf(snapshot.state);
    const active = base === "unacknowledged" || base === "acknowledged";
    const acked = base === "normal" || base === "acknowledged";
    const enabled = snapshot.state.name !== "out-of-service";
    const shelf = shelfOf(snapshot.state);
    // node-opcua refuses some setters on a disabled condition: enable first, disable last.
    if (enabled) branch.setEnabledState(true);
    branch.setActiveState(active);
    if (branch.getAckedState() !== acked) branch.setAckedState(acked);
    branch.setSuppressedState(isSuppressed(snapshot.state));
    const shelving = shelf === undefined ? "Unshelved" : shelf.mode === "timed" ? "TimedShelved" : "OneShotShelved";
    if (condition.shelvingState.getCurrentState() !== shelving) condition.shelvingState.setState(shelving);
    if (condition.limitState && snapshot.kind !== "BOOL") {
      const limit = active ? LIMIT_STATE_OF_KIND[snapshot.kind] : null;
      if (condition.limitState.getCurrentState() !== limit) condition.limitState.setState(limit);
    }
    // Severity is fixed by the priority; setSeverity also records LastSeverity.
    if (branch.getSeverity() !== served.severity) branch.setSeverity(served.severity);
    branch.setMessage(snapshot.message);
    const quality = context.qualityOf(snapshot.tag);
    branch.setQuality(quality);
    served.quality = quality.value;
    branch.setRetain(enabled && (active || !acked));
    // Who caused this transition: nobody for a process value or a timer (not the last commander).
    branch.setClientUserId(annotation?.user ?? "");
    if (annotation?.comment !== undefined) branch.setComment(annotation.comment);
    branch.setTime(new Date(at));
    branch.setReceiveTime(new Date(context.clock.now()));
    if (!enabled) branch.setEnabledState(false);
    // A disabled condition sends one event (the one that disables it) and none until enabled again.
    if (active && !served.active) served.unackedEventIds.length = 0; // a new occurrence
    served.active = active;
    if (acked) served.unackedEventIds.length = 0;
    if (raise && (enabled || !served.disabled)) raiseEvent(served, branch);
    served.disabled = !enabled;
  }

  /** Raises a condition event (a new EventId), remembering it for Acknowledge while unacknowledged. */
  function raiseEvent(served: ServedAlarm, branch: Branch): void {
    served.condition.raiseConditionEvent(branch, true);
    served.sentQuality = served.quality;
    if (branch.getAckedState()) return;
    served.unackedEventIds.push(branch.getEventId());
    if (served.unackedEventIds.length > MAX_OCCURRENCE_EVENT_IDS) served.unackedEventIds.shift();
  }

  /** Sends the Quality-only event held back, if the Quality still differs from the one last sent. */
  function sendQuality(served: ServedAlarm): void {
    served.qualityTimer = undefined;
    const branch = served.condition.currentBranch();
    if (served.quality === served.sentQuality || !branch.getRetain() || served.disabled) return;
    const now = context.clock.now();
    served.qualityEventAt = now;
    branch.setClientUserId("");
    branch.setTime(new Date(now));
    branch.setReceiveTime(new Date(now));
    raiseEvent(served, branch);
  }

  function followQuality(tag: string): void {
    for (const served of byTag.get(tag) ?? []) {
      const quality = context.qualityOf(tag);
      if (quality.value === served.quality) continue;
      served.quality = quality.value;
      const branch = served.condition.currentBranch();
      branch.setQuality(quality);
      // Part 9, 5.5.2: events for retained conditions only; a disabled one sends none.
      if (!branch.getRetain() || served.disabled || served.qualityTimer) continue;
      const wait = served.qualityEventAt + QUALITY_EVENT_INTERVAL_MS - context.clock.now();
      if (wait <= 0) sendQuality(served);
      else served.qualityTimer = context.clock.setTimeout(() => guarded(() => sendQuality(served)), wait);
    }
  }

  /** Runs `step`, logging (never throwing) what fails: a timer's callback must not end the process. */
  function guarded(step: () => void): void {
    try {
      step();
    } catch (error) {
      logger.error({ error: String(error) }, "alarm condition quality could not be updated");
    }
  }

  function bindUnshelveTime(served: ServedAlarm): void {
    const variable = served.condition.shelvingState.unshelveTime;
    if (!variable) return;
    // UnshelveTime (ms left) from Kiln's shelf on Kiln's clock, not node-opcua's own timer.
    variable.bindVariable(
      {
        timestamped_get: () => {
          const shelf = shelfOf(system.listAlarms().find((alarm) => alarm.id === served.id)?.state);
          return new runtime.DataValue({
            value: {
              dataType: runtime.DataType.Double,
              value: shelf ? Math.max(0, shelf.until - context.clock.now()) : 0,
            },
            statusCode: shelf ? codes.Good : codes.BadConditionNotShelved,
          });
        },
      },
      true,
    );
  }

  /** The Kiln alarm a method acts on: the condition (or its ShelvingState) the client called it on. */
  function alarmOf(methodContext: ISessionContext): ServedAlarm | undefined {
    const object = (methodContext as { object?: { nodeId: { toString(): string } } }).object;
    return object ? byNode.get(object.nodeId.toString()) : undefined;
  }

  /**
   * Runs a Kiln alarm command for the session's principal: the command's own checks,
   * authorization and audit decide; node-opcua's handler is never called. A call Kiln refuses
   * before the command (a Method called on an object that is no served condition:
   * `BadNodeIdInvalid`; a condition that is disabled: `BadConditionDisabled`) is authorized
   * (`permission`) and audited all the same, in one place: a principal without `permission`
   * gets `BadUserAccessDenied` and learns nothing of the condition's state.
   */
  function command(
    name: string,
    permission: string,
    run: (principal: Principal, alarm: ServedAlarm, inputs: Variant[]) => Promise<StatusCode | void>,
    refused: Partial<Record<string, StatusCode>> = {},
    needsEnabled = true,
    action: string = permission,
  ): MethodHandler {
    return async (inputs, methodContext) => {
      const principal = context.principalOf(methodContext?.session);
      const alarm = alarmOf(methodContext);
      if (!alarm) {
        const object = (methodContext as { object?: { nodeId: { toString(): string } } }).object;
        const target = object?.nodeId.toString() ?? "(no object)";
        const statusCode = await refuseCall(principal, {
          permission,
          action: `opcua.${name}`,
          target,
          reason: new KilnValidationError(`OPC UA ${name}`, [
            { path: "objectId", message: `${target} is not one of Kiln's alarm conditions` },
          ]),
          statusCode: codes.BadNodeIdInvalid,
        });
        return { statusCode };
      }
      // Each Method only on the object type that declares it: the shelving Methods on the
      // condition's ShelvingState, the others on the condition itself (adversarial review 20z).
      const object = (methodContext as { object?: { nodeId: { toString(): string } } }).object;
      const onShelvingState = object?.nodeId.toString() === alarm.condition.shelvingState.nodeId.toString();
      if (onShelvingState !== SHELVING_METHODS.has(name)) {
        const target = object?.nodeId.toString() ?? "(no object)";
        const statusCode = await refuseCall(principal, {
          permission,
          action: `opcua.${name}`,
          target,
          reason: new KilnValidationError(`OPC UA ${name}`, [
            {
              path: "objectId",
              message: `${name} is a Method of the condition's ${SHELVING_METHODS.has(name) ? "ShelvingState" : "object"}, not of ${target}`,
            },
          ]),
          statusCode: codes.BadMethodInvalid,
        });
        return { statusCode };
      }
      if (needsEnabled && !alarm.condition.currentBranch().getEnabledState()) {
        const statusCode = await refuseCall(principal, {
          permission,
          action: `opcua.${name}`,
          target: alarm.id,
          reason: new KilnError(
            "KILN_INVALID_TRANSITION",
            `Alarm "${alarm.id}" is out of service (condition disabled): ${name} is refused until it is enabled.`,
          ),
          statusCode: codes.BadConditionDisabled,
        });
        return { statusCode };
      }
      if (!context.can(principal, permission, alarm.id)) {
        // Refused as the command would (same role table, same target), through the server's
        // refusal path: repeated by a client in a loop, it is coalesced (one entry per 10 s).
        const statusCode = await refuseCall(principal, {
          permission,
          action,
          target: alarm.id,
          reason: new KilnError("KILN_FORBIDDEN", `Not allowed to ${name} alarm "${alarm.id}" (${permission}).`),
          statusCode: codes.BadUserAccessDenied,
        });
        return { statusCode };
      }
      try {
        const refused = await run(principal, alarm, inputs);
        if (refused) return { statusCode: refused };
        return { statusCode: codes.Good, outputArguments: [] };
      } catch (error) {
        const code = KilnError.is(error) ? error.code : undefined;
        logger.info(
          { alarmId: alarm.id, method: name, principal: principal.id, error: code ?? String(error) },
          "OPC UA alarm method refused",
        );
        const specific = code === undefined ? undefined : refused[code];
        return { statusCode: specific ?? runtime.getStatusCodeFromCode(statusCodeOfError(error)) };
      } finally {
        annotations.delete(alarm.id);
      }
    };
  }

  /** Audits a refusal (`context.refuse`: authorized first) and answers its StatusCode (`BadUserAccessDenied` for a principal without the permission). */
  async function refuseCall(
    principal: Principal,
    request: { permission: string; action: string; target: string; reason: KilnError; statusCode: StatusCode },
  ): Promise<StatusCode> {
    const { statusCode, ...rest } = request;
    const code = await context.refuse(principal, { ...rest, statusCode: statusCode.value });
    return code === statusCode.value ? statusCode : runtime.getStatusCodeFromCode(code >>> 0);
  }

  const acknowledge = command(
    "Acknowledge",
    "alarm.acknowledge",
    async (principal, alarm, inputs) => {
      const eventId = inputs[0]?.value as Buffer | null | undefined;
      // Part 9, 5.7.3: the EventId identifies the event notification acknowledged; any event of the
      // current unacknowledged occurrence (a Quality event may have followed the one the operator
      // saw) names that same state.
      const known =
        alarm.condition.findBranchForEventId(eventId ?? null) !== null ||
        (Buffer.isBuffer(eventId) && alarm.unackedEventIds.some((reported) => reported.equals(eventId)));
      if (!known) {
        return refuse(
          principal,
          alarm,
          "alarm.acknowledge",
          "Acknowledge: the EventId is not one this condition reported",
          codes.BadEventIdUnknown,
        );
      }
      const comment = textOf(inputs[1]);
      annotations.set(alarm.id, { user: principal.id, ...(comment === undefined ? {} : { comment }) });
      await system.acknowledgeAlarm(principal, alarm.id, comment ?? "OPC UA Acknowledge");
    },
    { KILN_INVALID_TRANSITION: codes.BadConditionBranchAlreadyAcked },
  );
  const timedShelve = command(
    "TimedShelve",
    "alarm.shelve",
    async (principal, alarm, inputs) => {
      const requested = inputs[0]?.value;
      // OPC UA Duration is a double in ms; Kiln shelves whole ms (rounded up, so never shorter).
      const durationMs =
        typeof requested === "number" && Number.isFinite(requested) ? Math.ceil(requested) : Number.NaN;
      annotations.set(alarm.id, { user: principal.id });
      await system.shelveAlarm(principal, alarm.id, { durationMs }, "OPC UA TimedShelve");
    },
    { KILN_VALIDATION: codes.BadShelvingTimeOutOfRange, KILN_INVALID_TRANSITION: codes.BadConditionAlreadyShelved },
  );
  const oneShotShelve = command(
    "OneShotShelve",
    "alarm.shelve",
    async (principal, alarm) => {
      annotations.set(alarm.id, { user: principal.id });
      await system.shelveAlarm(principal, alarm.id, { oneShot: true }, "OPC UA OneShotShelve");
    },
    { KILN_INVALID_TRANSITION: codes.BadConditionAlreadyShelved },
  );
  const unshelve = command(
    "Unshelve",
    "alarm.unshelve",
    async (principal, alarm) => {
      annotations.set(alarm.id, { user: principal.id });
      await system.unshelveAlarm(principal, alarm.id, "OPC UA Unshelve");
    },
    { KILN_INVALID_TRANSITION: codes.BadConditionNotShelved },
  );
  const enable = command(
    "Enable",
    "alarm.out-of-service",
    async (principal, alarm) => {
      annotations.set(alarm.id, { user: principal.id });
      await system.setAlarmInService(principal, alarm.id, true, "OPC UA Enable");
    },
    { KILN_INVALID_TRANSITION: codes.BadConditionAlreadyEnabled },
    false,
  );
  const disable = command(
    "Disable",
    "alarm.out-of-service",
    async (principal, alarm) => {
      annotations.set(alarm.id, { user: principal.id });
      await system.setAlarmInService(principal, alarm.id, false, "OPC UA Disable");
    },
    { KILN_INVALID_TRANSITION: codes.BadConditionAlreadyDisabled },
    false,
  );
  /** Audits a refusal made here (`context.refuse`) and answers its StatusCode. */
  async function refuse(
    principal: Principal,
    alarm: ServedAlarm,
    action: string,
    message: string,
    statusCode: StatusCode,
  ): Promise<StatusCode> {
    const reason =
      statusCode === codes.BadNotSupported
        ? new KilnError("KILN_NOT_SUPPORTED", `Alarm "${alarm.id}": ${message}`)
        : new KilnValidationError(`OPC UA ${action}`, [{ path: "EventId", message }]);
    return refuseCall(principal, { permission: "alarm.acknowledge", action, target: alarm.id, reason, statusCode });
  }
  const addComment = command(
    "AddComment",
    "alarm.acknowledge",
    (principal, alarm) =>
      refuse(
        principal,
        alarm,
        "alarm.comment",
        "AddComment: Kiln keeps a comment only with an alarm command (acknowledge, shelve)",
        codes.BadNotSupported,
      ),
    {},
    false,
    "alarm.comment",
  );
  const confirm = command(
    "Confirm",
    "alarm.acknowledge",
    (principal, alarm) =>
      refuse(
        principal,
        alarm,
        "alarm.confirm",
        "Confirm: Kiln's alarms have no confirmed state (ISA-18.2 acknowledge only)",
        codes.BadNotSupported,
      ),
    {},
    false,
    "alarm.confirm",
  );

  function bindInstanceMethods(served: ServedAlarm): void {
    const { condition } = served;
    const shelving = condition.shelvingState;
    const own = (owner: UAObject, name: string, permission: string, handler: MethodHandler): MethodHandler =>
      ownedBy(owner, name, permission, handler);
    bind(condition.acknowledge, own(condition, "Acknowledge", "alarm.acknowledge", acknowledge));
    bind(condition.addComment, own(condition, "AddComment", "alarm.acknowledge", addComment));
    const confirmMethod = (condition as unknown as { confirm?: MethodNode }).confirm;
    bind(confirmMethod, own(condition, "Confirm", "alarm.acknowledge", confirm));
    bind(condition.enable, own(condition, "Enable", "alarm.out-of-service", enable));
    bind(condition.disable, own(condition, "Disable", "alarm.out-of-service", disable));
    bind(shelving.timedShelve, own(shelving, "TimedShelve", "alarm.shelve", timedShelve));
    bind(shelving.oneShotShelve, own(shelving, "OneShotShelve", "alarm.shelve", oneShotShelve));
    bind(shelving.unshelve, own(shelving, "Unshelve", "alarm.unshelve", unshelve));
  }

  /**
   * A condition instance's Method runs only on its own object (Part 4, 5.11.2 and Part 9, 5.7.3:
   * `BadMethodInvalid` when the MethodId is not a Method of the ObjectId). Called with another
   * condition as ObjectId it acted on that other condition; now it is refused `BadMethodInvalid`,
   * authorized (`permission`) and audited like the other refusals. The types' Methods (bound in
   * `bindTypeMethods`) take any condition as their object.
   */
  function ownedBy(owner: UAObject, name: string, permission: string, handler: MethodHandler): MethodHandler {
    return async (inputs, methodContext) => {
      const object = (methodContext as { object?: { nodeId: { toString(): string } } }).object;
      if (object?.nodeId.toString() === owner.nodeId.toString()) return handler(inputs, methodContext);
      const target = object?.nodeId.toString() ?? "(no object)";
      const statusCode = await refuseCall(context.principalOf(methodContext?.session), {
        permission,
        action: `opcua.${name}`,
        target,
        reason: new KilnValidationError(`OPC UA ${name}`, [
          {
            path: "methodId",
            message: `the ${name} Method of ${owner.nodeId.toString()} is not a Method of ${target}`,
          },
        ]),
        statusCode: codes.BadMethodInvalid,
      });
      return { statusCode };
    };
  }

  /** Clients may call the type's method (e.g. AcknowledgeableConditionType.Acknowledge, i=9111) with the condition as the object. */
  function bindTypeMethods(): void {
    const onType = (typeName: string, methodName: string, handler: MethodHandler): void =>
      bind(
        addressSpace.findObjectType(typeName)?.getMethodByName(methodName) as MethodNode | null | undefined,
        handler,
      );
    onType("AcknowledgeableConditionType", "Acknowledge", acknowledge);
    onType("AcknowledgeableConditionType", "Confirm", confirm);
    onType("ConditionType", "AddComment", addComment);
    onType("ConditionType", "Enable", enable);
    onType("ConditionType", "Disable", disable);
    onType("ShelvedStateMachineType", "TimedShelve", timedShelve);
    onType("ShelvedStateMachineType", "OneShotShelve", oneShotShelve);
    onType("ShelvedStateMachineType", "Unshelve", unshelve);
  }

  for (const snapshot of snapshots) {
    const variable = context.variables.get(snapshot.tag);
    if (!variable) continue;
    if (!sources.has(snapshot.tag)) {
      notifier.addReference({ referenceType: "HasEventSource", nodeId: variable });
      sources.add(snapshot.tag);
    }
    const common = {
      browseName: snapshot.id,
      nodeId: `s=${conditionIdentifier(snapshot.id)}`,
      organizedBy: folder,
      conditionSource: variable,
      conditionOf: variable,
      conditionName: snapshot.id,
      // A NodeId, not the node: node-opcua then watches nothing (Kiln evaluates the alarm).
      inputNode: variable.nodeId,
      maxTimeShelved: MAX_SHELVE_MS,
      optionals: ["SuppressedState", "ShelvingState"],
    };
    let condition: ConditionNode;
    if (snapshot.kind === "BOOL") {
      condition = namespace.instantiateOffNormalAlarm({
        ...common,
        normalState: "ns=0;i=0",
      }) as unknown as ConditionNode;
    } else {
      const option = LIMIT_OPTION_OF_KIND[snapshot.kind];
      condition = namespace.instantiateExclusiveLimitAlarm("ExclusiveLimitAlarmType", {
        ...common,
        // The definition's setpoint (in the tag's unit); NaN only if a snapshot ever lacks it.
        [option]: snapshot.setpoint ?? Number.NaN,
      } as unknown as Parameters<Namespace["instantiateExclusiveLimitAlarm"]>[1]) as unknown as ConditionNode;
    }
    // SourceName is the tag's name, as an alarm list shows it: node-opcua fills it from the variable's last
    // BrowseName segment ("2:pressure"), the same for `chamber.pressure` and `exhaust.pressure` (adv20k L1).
    condition.sourceName.setValueFromSource({ dataType: runtime.DataType.String, value: snapshot.tag });
    // Kiln's engine evaluates the alarm (deadband, delays, quality); node-opcua must not.
    condition._onInputDataValueChange = () => undefined;
    condition.updateState = () => undefined;
    condition.evaluateConditionsAfterEnabled = () => undefined;
    const served: ServedAlarm = {
      id: snapshot.id,
      tag: snapshot.tag,
      quality: Number.NaN,
      condition,
      severity: OPCUA_SEVERITY_OF_PRIORITY[snapshot.priority],
      disabled: false,
      active: false,
      unackedEventIds: [],
      sentQuality: 0,
      qualityEventAt: Number.NEGATIVE_INFINITY,
      qualityTimer: undefined,
    };
    byNode.set(condition.nodeId.toString(), served);
    byNode.set(condition.shelvingState.nodeId.toString(), served);
    byId.set(snapshot.id, served);
    byTag.set(snapshot.tag, [...(byTag.get(snapshot.tag) ?? []), served]);
    context.guardCondition(condition, snapshot.tag);
    bindUnshelveTime(served);
    bindInstanceMethods(served);
    show(served, snapshot, context.clock.now(), false);
  }
  bindTypeMethods();

  const onChange = (event: KilnEvents["alarm-state-change"]): void => {
    const served = byId.get(event.alarmId);
    if (!served) return;
    // The bus delivers in the engine's transition, so the snapshot is the state this event reports.
    const snapshot = system.listAlarms().find((alarm) => alarm.id === event.alarmId);
    if (!snapshot) return;
    const annotation = annotations.get(event.alarmId) ?? (event.principal ? { user: event.principal } : undefined);
    try {
      show(served, snapshot, event.at, true, annotation);
    } catch (error) {
      logger.error({ alarmId: event.alarmId, error: String(error) }, "alarm condition could not be updated");
    }
  };
  const unsubscribe = system.bus.on("alarm-state-change", onChange);
  const dispose = (): void => {
    unsubscribe();
    for (const served of byId.values()) {
      if (served.qualityTimer) context.clock.clearTimeout(served.qualityTimer);
      served.qualityTimer = undefined;
    }
  };
  return {
    followQuality: (tag) => {
      try {
        followQuality(tag);
      } catch (error) {
        logger.error({ tag, error: String(error) }, "alarm condition quality could not be updated");
      }
    },
    dispose,
  };
}

function textOf(variant: Variant | undefined): string | undefined {
  const value = variant?.value as { text?: string | null } | string | null | undefined;
  const text = typeof value === "string" ? value : (value?.text ?? undefined);
  return text === null || text === undefined || text === "" ? undefined : text;
}

type BaseName = "normal" | "unacknowledged" | "acknowledged" | "rtn-unacknowledged";

/** The annunciation state under every overlay (shelved, suppressed, out of service). */
function baseStateOf(state: AlarmState): BaseName {
  let current: AlarmState = state;
  while ("underlying" in current) current = current.underlying;
  return current.name as BaseName;
}

function shelfOf(state: AlarmState | undefined): { mode: "timed" | "one-shot"; until: number } | undefined {
  let current: AlarmState | undefined = state;
  while (current !== undefined) {
    if (current.name === "shelved") return current.shelf;
    current = "underlying" in current ? current.underlying : undefined;
  }
  return undefined;
}

function isSuppressed(state: AlarmState): boolean {
  let current: AlarmState | undefined = state;
  while (current !== undefined) {
    if (current.name === "suppressed") return true;
    current = "underlying" in current ? current.underlying : undefined;
  }
  return false;
}

/** The Methods ShelvedStateMachineType declares (called on a condition's ShelvingState, never on the condition). */
const SHELVING_METHODS: ReadonlySet<string> = new Set(["TimedShelve", "OneShotShelve", "Unshelve"]);
