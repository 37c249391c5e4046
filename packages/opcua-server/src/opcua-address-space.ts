import type { Tag, TagCatalog, TagDataType } from "@kiln/core";
import type { Namespace, UAObject, UAVariable } from "node-opcua-address-space";
import type { EUInformation } from "node-opcua-types";
import type { ServerRuntime } from "./opcua-server-runtime-loader";

/** The OPC UA built-in DataType (Part 6, 5.1.2) of each Kiln tag data type. */
export const OPCUA_DATA_TYPE_OF_TAG = {
  bool: "Boolean",
  int16: "Int16",
  uint16: "UInt16",
  int32: "Int32",
  uint32: "UInt32",
  int64: "Int64",
  uint64: "UInt64",
  float32: "Float",
  float64: "Double",
  string: "String",
} as const satisfies Record<TagDataType, string>;

/** The string identifier of the folder of a dotted path (`""`: the machine's folder). `#` never occurs in a tag name. */
export function folderIdentifier(path: string): string {
  return `#${path}`;
}

/**
 * The separator between a parent's string identifier and a child's BrowseName in the NodeIds of
 * the nodes node-opcua creates under Kiln's (properties, condition and method children, `HA
 * Configuration`). It never occurs in a tag name (core's rule: `[A-Za-z_][A-Za-z0-9_.\-/:]*`), a
 * folder or machine identifier, or an escaped alarm id ({@link conditionIdentifier}), so a
 * derived NodeId never equals another node's (node-opcua's own `-` occurs in tag names: a tag
 * `p-EURange` took the NodeId of tag `p`'s EURange).
 */
export const CHILD_SEPARATOR = "|";

/** Characters kept as they are in an escaped identifier part: those of a tag name. */
const PLAIN = /[A-Za-z0-9_.\-/:]/u;

/** `text` with every character that may not occur in a tag name (`%` included) percent-encoded (UTF-8): injective, and free of {@link CHILD_SEPARATOR}. */
function escaped(text: string): string {
  let out = "";
  for (const char of text) {
    out += PLAIN.test(char)
      ? char
      : [...Buffer.from(char, "utf8")].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join("");
  }
  return out;
}

/**
 * The string identifier of an alarm's condition: `@Alarm.<alarm id>`, the id percent-encoded
 * where it has a character a tag name may not (`%`, space, `|`...; a default id `<tag>:<kind>` is
 * kept as it is, e.g. `@Alarm.chamber.pressure:HI`). An alarm id may be any text, so it is escaped
 * to keep {@link CHILD_SEPARATOR} out of it.
 */
export function conditionIdentifier(alarmId: string): string {
  return `@Alarm.${escaped(alarmId)}`;
}

/** A node-opcua NodeId, as far as {@link deriveChildNodeIds} uses it. */
interface NodeId {
  readonly identifierType: number;
  readonly value: unknown;
  readonly namespace: number;
}

/** node-opcua's `NodeIdType.STRING` (Part 6, 5.2.2.9: identifier type String). */
const STRING_IDENTIFIER = 2;

/** The members of node-opcua's NodeIdManager (private there) that {@link deriveChildNodeIds} wraps. */
interface NodeIdManager {
  _constructNodeId(options: { nodeId?: unknown; browseName?: { name?: string | null } }): NodeId;
  findParentNodeId(options: unknown): [NodeId, string] | null;
}

/**
 * Makes the namespace derive the NodeId of a node created without one under a node with a string
 * NodeId as `<parent identifier>|<BrowseName>` ({@link CHILD_SEPARATOR}; the BrowseName escaped
 * like an alarm id), instead of node-opcua's `<parent>-<BrowseName>`. Every NodeId the server
 * gives is then one of: a tag name, `#<path>` (folder), `@...` (machine, alarms), each without
 * the separator, or an ancestor's such id followed by `|`-separated BrowseNames: distinct for
 * any valid catalog and alarm list.
 */
export function deriveChildNodeIds(namespace: Namespace): void {
  const manager = (namespace as unknown as { _nodeIdManager: NodeIdManager })._nodeIdManager;
  const construct = manager._constructNodeId.bind(manager);
  manager._constructNodeId = (options) => {
    if (!options.nodeId) {
      const parent = manager.findParentNodeId(options)?.[0];
      if (parent?.identifierType === STRING_IDENTIFIER) {
        const name = escaped(options.browseName?.name ?? "");
        const NodeIdClass = parent.constructor as new (type: number, value: string, namespace: number) => NodeId;
        return new NodeIdClass(STRING_IDENTIFIER, `${String(parent.value)}${CHILD_SEPARATOR}${name}`, parent.namespace);
      }
    }
    return construct(options);
  };
}

/** Unit spellings Kiln users write that differ from node-opcua's standard display names. */
const UNIT_ALIASES: Readonly<Record<string, string>> = {
  degC: "°C",
  degF: "°F",
  "deg C": "°C",
  "deg F": "°F",
  sec: "s",
  percent: "%",
};

/** UNECE Recommendation 20 namespace of EUInformation (OPC UA Part 8, 5.6.3). */
const UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact";

/**
 * The EngineeringUnits of a unit text (OPC UA Part 8, 5.6.3): node-opcua's table of UNECE
 * Recommendation 20 units, matched by symbol (`mbar`, `°C`, `%`, `s`, `Pa`...), with its common
 * code as `unitId`; any other unit with `unitId` -1 ("not available") and the text as its
 * display name and description.
 */
export function engineeringUnitsOf(runtime: ServerRuntime, unit: string): EUInformation {
  const symbol = UNIT_ALIASES[unit] ?? unit;
  for (const known of Object.values(runtime.standardUnits) as EUInformation[]) {
    if (known.displayName.text === symbol) return known;
  }
  return new runtime.EUInformation({
    namespaceUri: UNECE_NAMESPACE,
    unitId: -1,
    displayName: { text: unit },
    description: { text: unit },
  });
}

const NUMERIC: ReadonlySet<TagDataType> = new Set([
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
  "float32",
  "float64",
]);

/**
 * Adds one variable per tag under `root`, in folders by the dotted tag name (`chamber.pressure`
 * is `pressure` in folder `chamber`): NodeId `s=<tag name>`, DataType from the tag's data type,
 * ValueRank Scalar, AccessLevel and UserAccessLevel `CurrentRead` (plus `CurrentWrite` for a
 * `readwrite` tag), MinimumSamplingInterval 0 (values are pushed on change), Description. A
 * numeric tag with a range is an AnalogItemType with EURange (and EngineeringUnits when it has a
 * unit); with a unit and no range, a BaseAnalogType with EngineeringUnits. A name that is both a
 * tag and the prefix of others (`chamber` and `chamber.pressure`) is a variable whose children
 * are those tags (HasComponent). A name with an empty segment (`a..b`) is not split.
 * @returns the variable of every tag, by tag name.
 */
export function addTagVariables(
  runtime: ServerRuntime,
  namespace: Namespace,
  root: UAObject,
  tags: TagCatalog,
): Map<string, UAVariable> {
  const variables = new Map<string, UAVariable>();
  const folders = new Map<string, UAObject>([["", root]]);

  const parentOf = (path: string): UAObject | UAVariable => {
    if (path === "") return root;
    const variable = variables.get(path);
    if (variable) return variable;
    const folder = folders.get(path);
    if (folder) return folder;
    const tag = tags.find(path);
    if (tag) return addVariable(tag);
    const cut = path.lastIndexOf(".");
    const parent = parentOf(cut < 0 ? "" : path.slice(0, cut));
    const name = cut < 0 ? path : path.slice(cut + 1);
    const created = namespace.addObject({
      browseName: name,
      displayName: name,
      nodeId: `s=${folderIdentifier(path)}`,
      typeDefinition: "FolderType",
      ...(parent.nodeClass === runtime.NodeClass.Variable ? { componentOf: parent } : { organizedBy: parent }),
    });
    folders.set(path, created);
    return created;
  };

  const addVariable = (tag: Tag): UAVariable => {
    const existing = variables.get(tag.name);
    if (existing) return existing;
    const segments = tag.name.split(".");
    const split = segments.length > 1 && segments.every((segment) => segment !== "");
    const parent = split ? parentOf(segments.slice(0, -1).join(".")) : root;
    const name = split ? segments.at(-1)! : tag.name;
    const access = tag.access === "readwrite" ? "CurrentRead | CurrentWrite" : "CurrentRead";
    const common = {
      browseName: name,
      displayName: name,
      nodeId: `s=${tag.name}`,
      dataType: OPCUA_DATA_TYPE_OF_TAG[tag.dataType],
      valueRank: -1,
      accessLevel: access,
      userAccessLevel: access,
      minimumSamplingInterval: 0,
      ...(tag.description === undefined ? {} : { description: tag.description }),
      ...(parent.nodeClass === runtime.NodeClass.Variable ? { componentOf: parent } : { organizedBy: parent }),
    };
    const numeric = NUMERIC.has(tag.dataType);
    const units = numeric && tag.unit !== undefined ? engineeringUnitsOf(runtime, tag.unit) : undefined;
    let variable: UAVariable;
    if (numeric && tag.range) {
      variable = namespace.addAnalogDataItem({
        ...common,
        engineeringUnitsRange: { low: tag.range.min, high: tag.range.max },
        ...(units ? { engineeringUnits: units } : {}),
      });
    } else if (units) {
      variable = namespace.addVariable({ ...common, typeDefinition: "BaseAnalogType" });
      namespace.addVariable({
        propertyOf: variable,
        browseName: { name: "EngineeringUnits", namespaceIndex: 0 },
        typeDefinition: "PropertyType",
        dataType: "EUInformation",
        value: { dataType: runtime.DataType.ExtensionObject, value: units },
      });
    } else {
      variable = namespace.addVariable(common);
    }
    variables.set(tag.name, variable);
    return variable;
  };

  for (const tag of tags.list()) addVariable(tag);
  return variables;
}
