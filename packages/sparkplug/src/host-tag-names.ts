import { KilnValidationError } from "@kiln/core";
import { sparkplugIdProblem } from "./topic";

/** Where a metric lives in the Sparkplug namespace: its group, edge node, device (if any) and name. */
export interface SparkplugMetricAddress {
  /** The Sparkplug group id (the topic's second level). */
  readonly groupId: string;
  /** The edge node id (the topic's fourth level). */
  readonly edgeNodeId: string;
  /** The device; undefined for a metric of the edge node itself (NBIRTH/NDATA). */
  readonly deviceId?: string;
  /** The metric name as the birth certificate gave it (any string, `/` for folders). */
  readonly metric: string;
}

/** The longest Kiln tag name (`TAG_NAME_MAX_LENGTH` in core): a longer qualified name is refused. */
export const TAG_NAME_MAX = 256;
const KEPT = /[A-Za-z0-9_.-]/;
const KEPT_IN_METRIC = /[A-Za-z0-9_./-]/;
const ALL_KEPT = /^[A-Za-z0-9_.-]*$/;
const ALL_KEPT_IN_METRIC = /^[A-Za-z0-9_./-]*$/;
const HEX = "0123456789ABCDEF";
const encoder = new TextEncoder();
// ignoreBOM: a metric that begins with U+FEFF keeps it (the default decoder drops a leading BOM, so the name did not round-trip).
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// The name is built from parts joined once: a string grown a character at a time (`out += c`)
// stays a chain of V8 cons-string pieces when kept as a Map key, about 20 bytes per character
// (831 instead of 108 bytes per entry for a 45-character name; adversarial review 19b).
function escape(text: string, keep: RegExp, all: RegExp): string {
  if (all.test(text)) return text;
  const parts: string[] = [];
  for (const character of text) {
    if (keep.test(character)) {
      parts.push(character);
      continue;
    }
    for (const byte of encoder.encode(character)) parts.push(`:${HEX[byte >> 4]}${HEX[byte & 15]}`);
  }
  return parts.join("");
}

function unescape(text: string, what: string): string {
  if (!text.includes(":")) return text;
  const bytes: number[] = [];
  for (let index = 0; index < text.length;) {
    if (text[index] === ":") {
      const hex = text.slice(index + 1, index + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) throw invalid(what, "a ':' must be followed by two upper-case hex digits");
      bytes.push(Number.parseInt(hex, 16));
      index += 3;
    } else {
      bytes.push(...encoder.encode(text[index]!));
      index++;
    }
  }
  try {
    return decoder.decode(new Uint8Array(bytes));
  } catch (error) {
    throw invalid(what, "its escapes are not UTF-8", error);
  }
}

function invalid(path: string, message: string, cause?: unknown): KilnValidationError {
  return new KilnValidationError(
    "Sparkplug qualified tag name",
    [{ path, message }],
    cause === undefined ? undefined : { cause },
  );
}

/**
 * The Kiln tag name under which a Sparkplug host stores a metric, qualified by group, edge node
 * and device so that many edge nodes share one database (docs/adr/0030-sparkplug-host.md):
 *
 * `<group>/<edge node>/<device>/<metric>`, or `<group>/<edge node>//<metric>` (an empty device
 * level) for a metric of the edge node itself.
 *
 * Letters, digits, `_`, `.` and `-` are kept as they are (and `/` inside the metric name, the
 * Sparkplug folder separator); every other character, `:` included, is written as `:` and the
 * two upper-case hex digits of each of its UTF-8 bytes (a space is `:20`). A name whose group
 * does not start with a letter gets a leading `_` (a Kiln tag name starts with a letter or `_`).
 * The mapping is one-to-one: {@link parseQualifiedTagName} gives the address back.
 *
 * @example
 * qualifiedTagName({ groupId: "plant-1", edgeNodeId: "line-3", deviceId: "ald-1", metric: "chamber.pressure" });
 * // "plant-1/line-3/ald-1/chamber.pressure"
 * qualifiedTagName({ groupId: "plant-1", edgeNodeId: "line-3", metric: "Node Control/Rebirth" });
 * // "plant-1/line-3//Node:20Control/Rebirth"
 * @throws KilnValidationError `KILN_VALIDATION` when an id is not a valid Sparkplug id (path
 *   `groupId`, `edgeNodeId`, `deviceId`), the metric name is empty (`metric`), or the qualified
 *   name is longer than a Kiln tag name may be, 256 characters (path `""`).
 */
export function qualifiedTagName(address: SparkplugMetricAddress): string {
  const issues = [];
  for (const field of ["groupId", "edgeNodeId", "deviceId"] as const) {
    if (field === "deviceId" && address.deviceId === undefined) continue;
    const problem = sparkplugIdProblem(address[field]);
    if (problem !== undefined) issues.push({ path: field, message: problem });
  }
  if (typeof address.metric !== "string" || address.metric === "") {
    issues.push({ path: "metric", message: "must be a non-empty string" });
  }
  if (issues.length > 0) throw new KilnValidationError("Sparkplug qualified tag name", issues);
  // Escaping never shortens a part, so a name too long before it is refused without escaping
  // (a 2 MB metric name took 0.5 s to escape only to be refused; adv19).
  const least =
    address.groupId.length + address.edgeNodeId.length + (address.deviceId?.length ?? 0) + address.metric.length + 3;
  if (least > TAG_NAME_MAX) {
    throw invalid(
      "",
      `the qualified name has at least ${least} characters; a Kiln tag name has at most ${TAG_NAME_MAX}`,
    );
  }
  const group = escape(address.groupId, KEPT, ALL_KEPT);
  // Joined once (flat), not concatenated: see escape.
  const name = [
    `${/^[A-Za-z]/.test(group) ? "" : "_"}${group}`,
    escape(address.edgeNodeId, KEPT, ALL_KEPT),
    address.deviceId === undefined ? "" : escape(address.deviceId, KEPT, ALL_KEPT),
    escape(address.metric, KEPT_IN_METRIC, ALL_KEPT_IN_METRIC),
  ].join("/");
  if (name.length > TAG_NAME_MAX) {
    throw invalid("", `the qualified name has ${name.length} characters; a Kiln tag name has at most ${TAG_NAME_MAX}`);
  }
  return name;
}

/**
 * The Sparkplug address of a tag name made by {@link qualifiedTagName}.
 * @throws KilnValidationError `KILN_VALIDATION` when `name` is not such a name (fewer than four
 *   `/`-separated levels, a bad escape, an invalid id).
 */
export function parseQualifiedTagName(name: string): SparkplugMetricAddress {
  if (typeof name !== "string") throw invalid("", "must be a string");
  const body = name.startsWith("_") ? name.slice(1) : name;
  const first = body.indexOf("/");
  const second = first < 0 ? -1 : body.indexOf("/", first + 1);
  const third = second < 0 ? -1 : body.indexOf("/", second + 1);
  if (third < 0) throw invalid("", "must have the levels <group>/<edge node>/<device or empty>/<metric>");
  const groupId = unescape(body.slice(0, first), "groupId");
  const edgeNodeId = unescape(body.slice(first + 1, second), "edgeNodeId");
  const device = body.slice(second + 1, third);
  const metric = unescape(body.slice(third + 1), "metric");
  const address: SparkplugMetricAddress =
    device === ""
      ? { groupId, edgeNodeId, metric }
      : { groupId, edgeNodeId, deviceId: unescape(device, "deviceId"), metric };
  if (qualifiedTagName(address) !== name) throw invalid("", "is not in the canonical form qualifiedTagName gives");
  return address;
}
