import { KilnValidationError, type ValidationIssue } from "@kiln/core";

/** The Sparkplug B namespace, the first level of every Sparkplug topic (Sparkplug 3.0.0, 4.1.1). */
export const SPARKPLUG_NAMESPACE = "spBv1.0";

/** Message types on an edge node's topic (Sparkplug 3.0.0, 4.1.1.3). */
export const NODE_MESSAGE_TYPES = ["NBIRTH", "NDEATH", "NDATA", "NCMD"] as const;
/** Message types on a device's topic (Sparkplug 3.0.0, 4.1.1.3). */
export const DEVICE_MESSAGE_TYPES = ["DBIRTH", "DDEATH", "DDATA", "DCMD"] as const;

/** An edge-node message type. */
export type NodeMessageType = (typeof NODE_MESSAGE_TYPES)[number];
/** A device message type. */
export type DeviceMessageType = (typeof DEVICE_MESSAGE_TYPES)[number];

/**
 * A parsed Sparkplug topic: `spBv1.0/<groupId>/<type>/<edgeNodeId>[/<deviceId>]`, or a host
 * application's `spBv1.0/STATE/<hostId>` (Sparkplug 3.0.0, 4.1.1 and 4.1.2).
 */
export type SparkplugTopic =
  | { readonly type: NodeMessageType; readonly groupId: string; readonly edgeNodeId: string }
  | {
      readonly type: DeviceMessageType;
      readonly groupId: string;
      readonly edgeNodeId: string;
      readonly deviceId: string;
    }
  | { readonly type: "STATE"; readonly hostId: string };

const RESERVED = /[+#/]/;
// MQTT 3.1.1 1.5.3 / MQTT 5 1.5.4: U+0000 MUST NOT occur in a topic (the broker closes the
// connection) and the other C0 and C1 controls SHOULD NOT; a broker may refuse them.
// eslint-disable-next-line no-control-regex -- matching control characters is this rule's point
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/;
/** The longest topic MQTT carries, in UTF-8 bytes (MQTT 3.1.1 1.5.3, MQTT 5 1.5.4). */
const TOPIC_MAX_BYTES = 65_535;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const NODE_TYPES: ReadonlySet<string> = new Set(NODE_MESSAGE_TYPES);
const DEVICE_TYPES: ReadonlySet<string> = new Set(DEVICE_MESSAGE_TYPES);

/**
 * The rule every Sparkplug id breaks, or undefined when `id` is valid: a non-empty UTF-8 string
 * without `+`, `/` or `#` (Sparkplug 3.0.0, 4.1.1: [tck-id-topic-structure-namespace-valid-group-id],
 * [...-valid-edge-node-id], [...-valid-device-id]; 5.6.1 for a host id), without U+0000 or other
 * C0/C1 control characters and at most 65,535 UTF-8 bytes (MQTT 5 1.5.4; a whole topic is checked
 * against that limit by {@link sparkplugTopic}).
 */
export function sparkplugIdProblem(id: unknown): string | undefined {
  if (typeof id !== "string" || id.length === 0) return "must be a non-empty string";
  if (RESERVED.test(id)) return "must not contain +, / or # (reserved by MQTT and Sparkplug)";
  if (LONE_SURROGATE.test(id)) return "must be valid UTF-8 (no lone surrogates)";
  if (CONTROL.test(id)) {
    return "must not contain U+0000 or other control characters (MQTT 5 1.5.4: a broker closes the connection or may refuse them)";
  }
  if (Buffer.byteLength(id, "utf8") > TOPIC_MAX_BYTES)
    return `must fit in an MQTT topic (${TOPIC_MAX_BYTES} UTF-8 bytes)`;
  return undefined;
}

/**
 * Checks Sparkplug ids, e.g. `checkSparkplugIds({ groupId, edgeNodeId })`.
 * @throws KilnValidationError `KILN_VALIDATION` naming each invalid id (`groupId`, `deviceId`...).
 */
export function checkSparkplugIds(ids: Readonly<Record<string, unknown>>, subject = "Sparkplug ids"): void {
  const issues: ValidationIssue[] = [];
  for (const [field, id] of Object.entries(ids)) {
    const problem = sparkplugIdProblem(id);
    if (problem !== undefined) issues.push({ path: field, message: problem });
  }
  if (issues.length > 0) throw new KilnValidationError(subject, issues);
}

/**
 * Builds a Sparkplug topic.
 *
 * @example
 * sparkplugTopic({ type: "DDATA", groupId: "plant-1", edgeNodeId: "line-3", deviceId: "ald-1" });
 * // "spBv1.0/plant-1/DDATA/line-3/ald-1"
 * sparkplugTopic({ type: "STATE", hostId: "scada" }); // "spBv1.0/STATE/scada"
 * @throws KilnValidationError `KILN_VALIDATION` when an id breaks {@link sparkplugIdProblem}'s
 *   rules, the topic is longer than MQTT's 65,535 UTF-8 bytes, or the type is not a Sparkplug
 *   message type.
 */
export function sparkplugTopic(topic: SparkplugTopic): string {
  const built = buildTopic(topic);
  const bytes = Buffer.byteLength(built, "utf8");
  if (bytes > TOPIC_MAX_BYTES) {
    throw new KilnValidationError("Sparkplug topic", [
      {
        path: "",
        message: `is ${bytes} UTF-8 bytes with these ids; MQTT carries at most ${TOPIC_MAX_BYTES} (MQTT 5 1.5.4): use shorter ids`,
      },
    ]);
  }
  return built;
}

function buildTopic(topic: SparkplugTopic): string {
  if (topic.type === "STATE") {
    checkSparkplugIds({ hostId: topic.hostId }, "Sparkplug topic");
    return `${SPARKPLUG_NAMESPACE}/STATE/${topic.hostId}`;
  }
  if (NODE_TYPES.has(topic.type)) {
    checkSparkplugIds({ groupId: topic.groupId, edgeNodeId: topic.edgeNodeId }, "Sparkplug topic");
    return `${SPARKPLUG_NAMESPACE}/${topic.groupId}/${topic.type}/${topic.edgeNodeId}`;
  }
  if (DEVICE_TYPES.has(topic.type)) {
    const device = topic as Extract<SparkplugTopic, { deviceId: string }>;
    checkSparkplugIds(
      { groupId: device.groupId, edgeNodeId: device.edgeNodeId, deviceId: device.deviceId },
      "Sparkplug topic",
    );
    return `${SPARKPLUG_NAMESPACE}/${device.groupId}/${device.type}/${device.edgeNodeId}/${device.deviceId}`;
  }
  throw new KilnValidationError("Sparkplug topic", [
    { path: "type", message: `must be STATE or one of ${[...NODE_TYPES, ...DEVICE_TYPES].join(", ")}` },
  ]);
}

/**
 * Parses a Sparkplug topic.
 *
 * @returns the topic's parts; see {@link SparkplugTopic}.
 * @throws KilnValidationError `KILN_VALIDATION` when the topic is not in the `spBv1.0` namespace,
 *   has the wrong number of levels for its type, has an unknown message type, or an invalid id.
 */
export function parseSparkplugTopic(topic: string): SparkplugTopic {
  const fail = (message: string): never => {
    throw new KilnValidationError("Sparkplug topic", [{ path: "", message: `${message}: ${JSON.stringify(topic)}` }]);
  };
  const levels = topic.split("/");
  if (levels[0] !== SPARKPLUG_NAMESPACE) return fail(`must start with ${SPARKPLUG_NAMESPACE}/`);
  if (levels[1] === "STATE" && levels.length === 3) {
    const hostId = levels[2]!;
    checkSparkplugIds({ hostId }, "Sparkplug topic");
    return { type: "STATE", hostId };
  }
  const [, groupId, type, edgeNodeId, deviceId] = levels as [string, string, string, string, string | undefined];
  if (NODE_TYPES.has(type)) {
    if (levels.length !== 4) return fail(`a ${type} topic has 4 levels`);
    checkSparkplugIds({ groupId, edgeNodeId }, "Sparkplug topic");
    return { type: type as NodeMessageType, groupId, edgeNodeId };
  }
  if (DEVICE_TYPES.has(type)) {
    if (levels.length !== 5) return fail(`a ${type} topic has 5 levels`);
    checkSparkplugIds({ groupId, edgeNodeId, deviceId }, "Sparkplug topic");
    return { type: type as DeviceMessageType, groupId, edgeNodeId, deviceId: deviceId! };
  }
  return fail("has no Sparkplug message type at its third level");
}
