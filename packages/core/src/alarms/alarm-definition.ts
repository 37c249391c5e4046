import { z } from "zod";
import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import type { Sample } from "../domain/sample";
import { checkTagValue, type TagCatalog, type TagValue } from "../domain/tags";
import { formatPath, issuesFromZod } from "../domain/validation";

/** The ISA-18.2 alarm types Kiln evaluates. */
export const ALARM_KINDS = ["HI", "LO", "HIHI", "LOLO", "BOOL"] as const satisfies readonly AlarmKind[];
/** An alarm type: high, low, high-high, low-low on a numeric tag, or BOOL on a boolean tag. */
export type AlarmKind = NumericAlarmKind | "BOOL";

/** The alarm types compared against a numeric setpoint. */
export const NUMERIC_ALARM_KINDS = ["HI", "LO", "HIHI", "LOLO"] as const satisfies readonly NumericAlarmKind[];
/** An alarm type compared against a numeric setpoint. */
export type NumericAlarmKind = "HI" | "LO" | "HIHI" | "LOLO";

/**
 * Alarm priority, 1 highest: 1 critical (immediate action, often with an interlock), 2 high
 * (action within minutes), 3 medium, 4 low (advisory). ISA-18.2 recommends few priorities,
 * used in decreasing proportion (roughly 5 % / 15 % / 80 % for three levels).
 */
export type AlarmPriority = 1 | 2 | 3 | 4;

/** What a `suppressWhen` function can read when the engine evaluates it. */
export interface AlarmConditionContext {
  /** The engine clock's time, ms since epoch. */
  readonly now: number;
  /** The last value of `tag` that did not have bad quality, or undefined when none was observed yet. */
  value(tag: string): TagValue | undefined;
  /** The last sample of `tag`, whatever its quality, or undefined. */
  sample(tag: string): Sample | undefined;
}

/** A suppression-by-design condition written as code; it must be pure and fast (it runs on every sample). */
export type AlarmSuppressionPredicate = (context: AlarmConditionContext) => boolean;

/** A declarative suppression condition: suppressed while the last good value of `tag` equals `equals`. */
export interface AlarmSuppressionRule {
  /** The tag to watch (must be in the catalog). */
  readonly tag: string;
  /** The value that suppresses the alarm. */
  readonly equals: number | boolean | string;
}

/** A suppression-by-design condition: a predicate, or a tag-equals-value rule. */
export type AlarmSuppressionCondition = AlarmSuppressionPredicate | AlarmSuppressionRule;

const suppressionRuleSchema = z.strictObject({
  tag: z.string().min(1),
  equals: z.union([z.number(), z.boolean(), z.string()]),
});

const suppressionSchema = z.custom<AlarmSuppressionCondition>(
  (value) => typeof value === "function" || (typeof value === "object" && value !== null),
  { message: "suppressWhen must be a function or { tag, equals }" },
);

const commonFields = {
  id: z.string().min(1).optional(),
  tag: z.string().min(1),
  priority: z.literal([1, 2, 3, 4]),
  message: z.string().min(1).optional(),
  onDelayMs: z.number().int().nonnegative().default(0),
  offDelayMs: z.number().int().nonnegative().default(0),
  interlock: z.boolean().default(false),
  suppressWhen: suppressionSchema.optional(),
};

/**
 * @internal zod schema of one alarm definition (shape only; {@link defineAlarms} also checks it against the
 * tag catalog). Numeric kinds take `setpoint` and `deadband`; `BOOL` takes `alarmValue`.
 */
export const alarmDefinitionSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    ...commonFields,
    kind: z.enum(NUMERIC_ALARM_KINDS),
    setpoint: z.number(),
    deadband: z.number().nonnegative().default(0),
  }),
  z.strictObject({ ...commonFields, kind: z.literal("BOOL"), alarmValue: z.boolean().default(true) }),
]);

/**
 * What a user writes for one alarm (defaults not yet applied): the fields every alarm has, and
 * per `kind` either a numeric limit (`HI`, `LO`, `HIHI`, `LOLO` with `setpoint`) or a `BOOL`
 * alarm on a boolean tag. {@link defineAlarms} checks it and throws `KilnValidationError`
 * (`KILN_VALIDATION`) naming every bad field, e.g. `alarms[2].setpoint`. One kind is
 * `Extract<AlarmDefinitionInput, { kind: "BOOL" }>`.
 */
export type AlarmDefinitionInput = {
  /** Unique id. @default `${tag}:${kind}`, e.g. `chamber.pressure:HI` */
  readonly id?: string | undefined;
  /** The watched tag (must be in the catalog). */
  readonly tag: string;
  /** 1 (critical) to 4 (low); see {@link AlarmPriority}. */
  readonly priority: AlarmPriority;
  /** Text shown to the operator. @default generated from tag, kind and setpoint */
  readonly message?: string | undefined;
  /** ISA-18.2 on-delay: the condition must hold this long (ms, integer >= 0) before the alarm activates. @default 0 */
  readonly onDelayMs?: number | undefined;
  /** ISA-18.2 off-delay: the condition must be clear this long (ms, integer >= 0) before the alarm returns. @default 0 */
  readonly offDelayMs?: number | undefined;
  /** Marks an alarm that trips an interlock (shown, not acted on by Kiln). @default false */
  readonly interlock?: boolean | undefined;
  /** Suppression by design (ISA-18.2 11.5.2): while it holds, the alarm is suppressed. */
  readonly suppressWhen?: AlarmSuppressionCondition | undefined;
} &
  /** An `HI`, `LO`, `HIHI` or `LOLO` alarm as a user writes it. */
  (
    | {
        /** The alarm type. */
        readonly kind: NumericAlarmKind;
        /** The limit, in the tag's unit. */
        readonly setpoint: number;
        /** Hysteresis in the tag's unit (>= 0): the alarm returns only beyond `setpoint` -/+ `deadband`. @default 0 */
        readonly deadband?: number | undefined;
      }
    /** A `BOOL` alarm on a boolean tag as a user writes it. */
    | {
        /** The alarm type. */
        readonly kind: "BOOL";
        /** The value that is the alarm condition. @default true */
        readonly alarmValue?: boolean | undefined;
      }
  );

/**
 * A validated alarm definition with every default applied: the fields every alarm has, and per
 * `kind` the numeric limit or the boolean alarm value. A host narrows by `kind`; one kind is
 * `Extract<AlarmDefinition, { kind: "BOOL" }>`.
 */
export type AlarmDefinition = {
  /** Unique id. @default `${tag}:${kind}`, e.g. `chamber.pressure:HI` */
  readonly id: string;
  /** The watched tag. */
  readonly tag: string;
  /** 1 (critical) to 4 (low). See {@link AlarmPriority}. */
  readonly priority: AlarmPriority;
  /** What the operator reads. @default e.g. `chamber.pressure HI (> 5)` */
  readonly message: string;
  /** How long the condition must hold continuously before the alarm activates. @default 0 */
  readonly onDelayMs: number;
  /** How long the return-to-normal condition must hold continuously before the alarm clears. @default 0 */
  readonly offDelayMs: number;
  /** When true, the engine publishes `interlock-trip` when the alarm activates in effect. @default false */
  readonly interlock: boolean;
  /** Suppression by design: while it holds, the alarm is `suppressed`. */
  readonly suppressWhen?: AlarmSuppressionCondition;
} &
  /**
   * A HI/HIHI alarm activates when the value rises above `setpoint` and clears only at or below
   * `setpoint - deadband`; a LO/LOLO alarm activates below `setpoint` and clears only at or above
   * `setpoint + deadband`.
   */
  (
    | {
        /** HI, LO, HIHI or LOLO. */
        readonly kind: NumericAlarmKind;
        /** The limit, in the tag's engineering unit. */
        readonly setpoint: number;
        /** Absolute hysteresis for return to normal, in the tag's unit. @default 0 */
        readonly deadband: number;
      }
    /** A BOOL alarm is active while the tag's value is `alarmValue`. */
    | {
        /** Always BOOL. */
        readonly kind: "BOOL";
        /** The value that means "alarm". @default true */
        readonly alarmValue: boolean;
      }
  );

/** The numeric kinds of a validated definition, for this module (ADR 0027: the public surface names the union). */
type NumericAlarmDefinition = Extract<AlarmDefinition, { readonly kind: NumericAlarmKind }>;

const NUMERIC_DATA_TYPES = new Set(["int16", "uint16", "int32", "uint32", "float32", "float64"]);

/**
 * Validates alarm definitions against a tag catalog and applies defaults. Checks that every tag
 * exists, numeric kinds watch numeric tags and BOOL watches a bool tag, setpoints lie inside the
 * tag's range, HIHI lies above HI and LOLO below LO on the same tag, ids are unique, and
 * `suppressWhen` rules name a known tag and a value of its type.
 *
 * @example
 * const alarms = defineAlarms(
 *   [
 *     { tag: "chamber.pressure", kind: "HI", setpoint: 5, deadband: 0.2, onDelayMs: 2_000, priority: 2 },
 *     { tag: "door.open", kind: "BOOL", priority: 1, interlock: true },
 *   ],
 *   tags,
 * );
 * @throws KilnValidationError (`KILN_VALIDATION`) listing every problem with its path, e.g. `[0].setpoint`.
 */
export function defineAlarms(
  definitions: readonly AlarmDefinitionInput[],
  tags: TagCatalog,
): readonly AlarmDefinition[] {
  if (!Array.isArray(definitions)) throw new TypeError("defineAlarms expects an array of alarm definitions");
  const issues: ValidationIssue[] = [];
  const result: { definition: AlarmDefinition; index: number }[] = [];
  const firstIndexOfId = new Map<string, number>();

  definitions.forEach((input, index) => {
    const parsed = alarmDefinitionSchema.safeParse(input);
    if (!parsed.success) {
      issues.push(...issuesFromZod(parsed.error, [index]));
      return;
    }
    const data = parsed.data;
    const before = issues.length;
    const at = (...path: PropertyKey[]): string => formatPath([index, ...path]);
    const tag = tags.find(data.tag);
    if (!tag) {
      issues.push({ path: at("tag"), message: `no tag named "${data.tag}" in the catalog` });
    } else if (tag.arrayLength !== undefined) {
      // docs/adr/0038-array-tags.md: a limit on "an array" has no single meaning.
      issues.push({
        path: at("tag"),
        message: `"${tag.name}" is an array tag (arrayLength ${tag.arrayLength}): alarm on an element through a scalar tag`,
      });
    } else if (data.kind === "BOOL") {
      if (tag.dataType !== "bool") {
        issues.push({ path: at("kind"), message: `a BOOL alarm needs a bool tag; "${tag.name}" is ${tag.dataType}` });
      }
    } else if (!NUMERIC_DATA_TYPES.has(tag.dataType)) {
      issues.push({
        path: at("kind"),
        message: `a ${data.kind} alarm needs a numeric tag; "${tag.name}" is ${tag.dataType}`,
      });
    } else if (tag.range && (data.setpoint < tag.range.min || data.setpoint > tag.range.max)) {
      issues.push({
        path: at("setpoint"),
        message: `${data.setpoint} is outside the range ${tag.range.min}..${tag.range.max} of "${tag.name}"`,
      });
    }
    if (data.suppressWhen !== undefined && typeof data.suppressWhen !== "function") {
      const rule = suppressionRuleSchema.safeParse(data.suppressWhen);
      if (!rule.success) {
        issues.push(...issuesFromZod(rule.error, [index, "suppressWhen"]));
      } else {
        const ruleTag = tags.find(rule.data.tag);
        if (!ruleTag) {
          issues.push({ path: at("suppressWhen", "tag"), message: `no tag named "${rule.data.tag}" in the catalog` });
        } else if (ruleTag.arrayLength !== undefined) {
          issues.push({
            path: at("suppressWhen", "tag"),
            message: `"${ruleTag.name}" is an array tag: use a scalar tag`,
          });
        } else {
          const problem = checkTagValue(ruleTag, rule.data.equals);
          if (problem !== undefined) issues.push({ path: at("suppressWhen", "equals"), message: problem });
        }
      }
    }
    const id = data.id ?? `${data.tag}:${data.kind}`;
    const earlier = firstIndexOfId.get(id);
    if (earlier !== undefined) {
      issues.push({ path: at("id"), message: `duplicate alarm id "${id}" (also at ${formatPath([earlier])})` });
    } else {
      firstIndexOfId.set(id, index);
    }
    if (issues.length > before) return;

    const base = {
      id,
      tag: data.tag,
      priority: data.priority,
      onDelayMs: data.onDelayMs,
      offDelayMs: data.offDelayMs,
      interlock: data.interlock,
      ...(data.suppressWhen === undefined ? {} : { suppressWhen: data.suppressWhen }),
    };
    const definition: AlarmDefinition =
      data.kind === "BOOL"
        ? {
            ...base,
            kind: "BOOL",
            alarmValue: data.alarmValue,
            message: data.message ?? `${data.tag} ${data.alarmValue ? "on" : "off"}`,
          }
        : {
            ...base,
            kind: data.kind,
            setpoint: data.setpoint,
            deadband: data.deadband,
            message:
              data.message ?? `${data.tag} ${data.kind} (${isHighAlarmKind(data.kind) ? ">" : "<"} ${data.setpoint})`,
          };
    result.push({ definition: Object.freeze(definition), index });
  });

  issues.push(...checkLimitOrder(result));
  if (issues.length > 0) throw new KilnValidationError("alarm definitions", issues);
  return Object.freeze(result.map((entry) => entry.definition));
}

/** True for HI and HIHI (the alarm activates above the setpoint). */
export function isHighAlarmKind(kind: NumericAlarmKind): boolean {
  return kind === "HI" || kind === "HIHI";
}

function checkLimitOrder(entries: readonly { definition: AlarmDefinition; index: number }[]): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const numeric = entries.filter(
    (entry): entry is { definition: NumericAlarmDefinition; index: number } => entry.definition.kind !== "BOOL",
  );
  for (const outer of numeric) {
    const { kind, tag, setpoint } = outer.definition;
    if (kind !== "HIHI" && kind !== "LOLO") continue;
    const inner = kind === "HIHI" ? "HI" : "LO";
    for (const other of numeric) {
      if (other.definition.tag !== tag || other.definition.kind !== inner) continue;
      const ordered = kind === "HIHI" ? setpoint > other.definition.setpoint : setpoint < other.definition.setpoint;
      if (!ordered) {
        issues.push({
          path: formatPath([outer.index, "setpoint"]),
          message: `${kind} setpoint ${setpoint} must be ${kind === "HIHI" ? "above" : "below"} the ${inner} setpoint ${other.definition.setpoint} at ${formatPath([other.index])}`,
        });
      }
    }
  }
  return issues;
}
