import { z } from "zod";
import type { AlarmDefinitionInput } from "../alarms/alarm-definition";
import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import { frozenTagValue, TagCatalog, type TagValue } from "../domain/tags";
import { safeStateIssues } from "../recipes/safe-state";
import { multiplierProblem } from "../driver-kit/backoff";
import { issuesFromZod } from "../domain/validation";
import { DEFAULT_SPOOL_MAX_BYTES } from "../logging/sample-logger";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import type { Metrics } from "@kiln/core/driver-kit";
import type { PlcDriver } from "../ports/plc-driver";
import type { Store } from "../ports/store";
import type { RetryJitter } from "../resilience/retry";
import { DEFAULT_RUN_WITHOUT_DURABLE_AUDIT } from "../security/audited-command-options";
import { PERMISSIONS, roleTableProblems, type RoleTable } from "../security/authorization";
import type { ServiceRegistry } from "@kiln/core/advanced";

const positive = z.number().positive();
const positiveInteger = z.number().int().positive();

/** Defaults of one backoff: delays in ms, `multiplier` ≥ 1. */
interface BackoffDefaults {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly multiplier: number;
}

/**
 * A capped exponential backoff, as given in the options (`acquisition.reconnect`,
 * `logging.retry`, `storePolicies.<port>.retry`): attempt `n` waits
 * `min(maxDelayMs, initialDelayMs × multiplier^(n − 1))` ms, then jittered. Each field has the
 * default of the place it is given in.
 */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. > 0 */
  readonly initialDelayMs?: number;
  /** Upper bound of any delay, before jitter, in ms. ≥ `initialDelayMs` */
  readonly maxDelayMs?: number;
  /** Growth factor from one attempt to the next. ≥ 1. @default 2 */
  readonly multiplier?: number;
  /**
   * `"full"`: uniform in `[0, delay)`; `"equal"`: uniform in `[delay/2, delay)`; `"none"`: exactly
   * the delay. Full jitter spreads the retries of many systems that lost the same device or
   * database best. @default "full"
   */
  readonly jitter?: RetryJitter;
}

const jitterSchema = z.enum(["full", "equal", "none"]).default("full");

/**
 * The one schema of a capped exponential backoff (reconnect, samples retry, store-port retry):
 * `initialDelayMs` > 0, `maxDelayMs` > 0 and at least `initialDelayMs`, `multiplier` ≥ 1 and
 * reaching `maxDelayMs` within 1,000 attempts, `jitter` one of the kinds (the rules of the driver kit's `checkBackoff`).
 * `extra` adds fields of the same object (a retry's `maxAttempts`).
 */
const backoffSchema = <TExtra extends z.ZodRawShape = Record<never, never>>(
  defaults: BackoffDefaults,
  extra?: TExtra,
) =>
  z
    .object({
      initialDelayMs: positive.default(defaults.initialDelayMs),
      maxDelayMs: positive.default(defaults.maxDelayMs),
      multiplier: z.number().min(1).default(defaults.multiplier),
      jitter: jitterSchema,
      ...(extra as TExtra),
    })
    .strict()
    .refine((value) => (value as BackoffDefaults).maxDelayMs >= (value as BackoffDefaults).initialDelayMs, {
      message: "maxDelayMs must be at least initialDelayMs",
      path: ["maxDelayMs"],
    })
    // The driver kit's rule: the delay reaches maxDelayMs within 1,000 attempts (adv13g).
    .superRefine((value, context) => {
      const backoff = value as BackoffDefaults;
      if (!(backoff.maxDelayMs >= backoff.initialDelayMs)) return;
      const problem = multiplierProblem(backoff);
      if (problem !== undefined) context.addIssue({ code: "custom", message: problem.message, path: [problem.field] });
    })
    // Every field has a default, so `{}` is a complete input (zod cannot see that through TExtra).
    .prefault({} as never);

/** The one schema of a port breaker: consecutive failures to open, ms open before half-open. */
const breakerSchema = (recoveryTimeMs = 10_000) =>
  z
    .object({ failureThreshold: positiveInteger.default(5), recoveryTimeMs: positive.default(recoveryTimeMs) })
    .strict()
    .prefault({});

/** zod schema of one scan group's settings. */
export const scanGroupSchema = z
  .object({
    periodMs: positive,
    mode: z.enum(["poll", "subscribe"]).default("poll"),
    staleAfterPeriods: z.number().int().nonnegative().default(3),
    maxSourceAgeMs: z.number().nonnegative().optional(),
    queueSize: positiveInteger.optional(),
    deadband: z.number().nonnegative().optional(),
  })
  .strict();

const acquisitionSchema = z
  .object({
    timeoutMs: positive.default(2_000),
    failureThreshold: positiveInteger.default(3),
    recoveryTimeMs: positive.default(5_000),
    reconnect: backoffSchema({ initialDelayMs: 500, maxDelayMs: 30_000, multiplier: 2 }),
  })
  .strict()
  .prefault({});

const loggingSchema = z
  .object({
    maxBatchSize: positiveInteger.default(1_000),
    maxLatencyMs: positive.default(1_000),
    flushConcurrency: positiveInteger.max(64).default(2),
    maxBufferedSamples: positiveInteger.default(100_000),
    overflow: z.enum(["block", "drop-oldest", "spool"]).default("block"),
    spoolPath: z.string().min(1).optional(),
    spoolMaxBytes: positiveInteger.min(1024).default(DEFAULT_SPOOL_MAX_BYTES),
    writeTimeoutMs: positive.default(10_000),
    retry: backoffSchema({ initialDelayMs: 200, maxDelayMs: 10_000, multiplier: 2 }),
    breaker: breakerSchema(),
    drainTimeoutMs: positive.default(30_000),
  })
  .strict()
  .superRefine((value, context) => {
    if (value.overflow === "spool" && !value.spoolPath) {
      context.addIssue({ code: "custom", path: ["spoolPath"], message: 'required when overflow is "spool"' });
    }
    if (value.maxBufferedSamples < value.maxBatchSize) {
      context.addIssue({ code: "custom", path: ["maxBufferedSamples"], message: "must be at least maxBatchSize" });
    }
  })
  .prefault({});

const storePortPolicySchema = (timeoutMs: number, recoveryTimeMs = 10_000) =>
  z
    .object({
      timeoutMs: positive.default(timeoutMs),
      breaker: breakerSchema(recoveryTimeMs),
      retry: backoffSchema(
        { initialDelayMs: 100, maxDelayMs: 2_000, multiplier: 2 },
        { maxAttempts: positiveInteger.default(3) },
      ),
    })
    .strict()
    .prefault({});

/** zod schema of `storePolicies`: one policy per store port (the samples port is configured under `logging`). */
export const storePoliciesSchema = z
  .object({
    history: storePortPolicySchema(30_000),
    events: storePortPolicySchema(5_000),
    processes: storePortPolicySchema(5_000),
    recipes: storePortPolicySchema(5_000),
    alarms: storePortPolicySchema(5_000),
    // Every command waits on this breaker (fail closed): it half-opens sooner, so commands are
    // refused for at most ~2 s after the audit store is back (issue 15, fault 9).
    audit: storePortPolicySchema(5_000, 2_000),
  })
  .strict()
  .prefault({});

// The value is checked against its tag below, by the rule of every write (an array tag's shape,
// length and elements too; review 15j, L2), not by a fixed list of scalar types here.
const safeStateSchema = z.array(
  z
    .object({
      tag: z.string().min(1),
      value: z.custom<TagValue>((value) => value !== undefined && value !== null, "must be a tag value"),
    })
    .strict(),
);

const machineSchema = z
  .object({
    model: z.enum(["kiln", "packml"]).default("kiln"),
    safeState: safeStateSchema.default([]),
  })
  .strict()
  .prefault({});

const authorizationSchema = z
  .object({
    // The one set of grant rules, also the Authorizer's and defaultRoleTable's (issue 15).
    roles: z
      .unknown()
      .superRefine((table, context) => {
        if (table === undefined) return;
        for (const problem of roleTableProblems(table)) {
          context.addIssue({ code: "custom", message: problem.message, path: [...problem.path] });
        }
      })
      .optional(),
    operatorWritableTags: z.array(z.string().min(1)).default([]),
  })
  .strict()
  .prefault({});

const recipesSchema = z
  .object({
    progressSaveIntervalMs: positive.default(5_000),
  })
  .strict()
  .prefault({});

/** The actions Kiln's commands record: every permission but `read`, which no command checks. */
const COMMAND_ACTIONS: readonly string[] = PERMISSIONS.filter((permission) => permission !== "read");

/** zod schema of `audit`: the backlog (CR 2.9) and the actions that run without a durable entry (CR 2.10). */
const auditSchema = z
  .object({
    // UTF-16 code units, like every name rule (zod's max counts code points).
    source: z
      .string()
      .min(1)
      .refine((text) => text.length <= 256, "must be at most 256 characters")
      .optional(),
    backlog: z
      .object({
        path: z.string().min(1).optional(),
        maxEntries: z.number().int().positive().default(10_000),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(64 * 1024 * 1024),
        whenFull: z.enum(["refuse-commands", "drop-oldest"]).default("refuse-commands"),
      })
      .strict()
      .prefault({}),
    // A misspelt action would otherwise be ignored and the action wait on the audit trail (issue 15).
    runWithoutDurableAudit: z
      .array(
        z
          .string()
          .refine(
            (action) => COMMAND_ACTIONS.includes(action),
            `must be the action of a Kiln command: ${COMMAND_ACTIONS.join(", ")}`,
          ),
      )
      .default([...DEFAULT_RUN_WITHOUT_DURABLE_AUDIT]),
  })
  .strict()
  .prefault({});

const implementing = <T>(what: string, check: (value: Record<string, unknown>) => boolean) =>
  z.custom<T>((value) => typeof value === "object" && value !== null && check(value as Record<string, unknown>), {
    message: `must implement ${what}`,
  });

const optionsSchema = z
  .object({
    machineId: z
      .string()
      .min(1)
      .regex(/^[A-Za-z0-9_.:-]+$/, "use letters, digits and _ . : - only"),
    tags: z.instanceof(TagCatalog, { message: "must be a TagCatalog made with defineTags()" }),
    driver: implementing<PlcDriver>(
      'the PlcDriver port (driverApiVersion "1", read, write, connect, close)',
      (value) =>
        value.driverApiVersion === "1" &&
        ["read", "write", "connect", "close", "onStatusChange"].every((name) => typeof value[name] === "function"),
    ).optional(),
    store: implementing<Store>(
      'the Store port (storeApiVersion "1")',
      (value) => value.storeApiVersion === "1" && typeof value.open === "function",
    ).optional(),
    clock: implementing<Clock>("the Clock port", (value) => typeof value.now === "function").optional(),
    logger: implementing<Logger>("the Logger port", (value) => typeof value.child === "function").optional(),
    metrics: implementing<Metrics>("the Metrics port", (value) => typeof value.counter === "function").optional(),
    scanGroups: z.record(z.string().min(1), scanGroupSchema).prefault({ default: { periodMs: 1_000 } }),
    acquisition: acquisitionSchema,
    logging: loggingSchema,
    storePolicies: storePoliciesSchema,
    lifecycleTimeoutMs: positive.default(30_000),
    alarms: z.array(z.unknown()).default([]),
    machine: machineSchema,
    authorization: authorizationSchema,
    recipes: recipesSchema,
    audit: auditSchema,
    register: z
      .custom<(registry: ServiceRegistry) => void>((value) => typeof value === "function", {
        message: "must be a function",
      })
      .optional(),
    random: z
      .custom<() => number>((value) => typeof value === "function", { message: "must be a function" })
      .optional(),
  })
  .strict();

/** What a host passes to `createControlSystem`. Only `machineId` and `tags` are required. */
export interface ControlSystemOptions {
  /** The machine this system controls; events and processes carry it. */
  readonly machineId: string;
  /** The machine's tags, from `defineTags`. */
  readonly tags: TagCatalog;
  /** The PLC driver. @default a `SimulatedPlc` serving the tags */
  readonly driver?: PlcDriver;
  /** Where samples, events, processes, recipes, alarms and audit go. @default a `MemoryStore` */
  readonly store?: Store;
  /** @default the system clock */
  readonly clock?: Clock;
  /** A pino-compatible logger. @default silent */
  readonly logger?: Logger;
  /** @default a `MemoryMetrics` */
  readonly metrics?: Metrics;
  /** Scan groups by name; every tag's `scanGroup` must be one of them. @default `{ default: { periodMs: 1000 } }` */
  readonly scanGroups?: Readonly<
    Record<
      string,
      {
        /** Poll period (or the sampling interval asked of a subscription), in ms. > 0 */
        readonly periodMs: number;
        /** @default "poll" */
        readonly mode?: "poll" | "subscribe";
        /** Periods without a new value after which a polled value turns uncertain (stale). 0 = never. @default 3 */
        readonly staleAfterPeriods?: number;
        /**
         * How long (ms, on the host's monotonic clock) the source of a good sample of one of the
         * group's tags may go without advancing (a new source timestamp, value or quality) for an
         * interlock alarm on the tag to be permissive: longer, the interlock holds starts and
         * resets (`stale: tag <tag> source not advanced for <age> ms (max <limit> ms)`), and
         * a running process is tripped (the device or a gateway serving a cached value whose source
         * timestamp stopped advancing). The device's clock is never compared with the host's: a
         * device clock hours off does not matter, only whether its timestamps advance. 0 = no limit. Where a device keeps the source timestamp at
         * the value's last change (many OPC UA servers for an unchanged value), set 0 or the longest
         * time a healthy value may stay unchanged. A device that stamps each sample (a PLC's
         * OPC UA server sampling its inputs) takes a few scan periods, e.g. `3 × periodMs`.
         * Kiln's Modbus driver stamps the read time, so the limit never fires there. ≥ 0
         * @default 0 (no limit: not derived from the scan period, because a device that keeps a
         * steady value's timestamp at its last change would hold starts and trip processes)
         */
        readonly maxSourceAgeMs?: number;
        /** Subscription queue size per item (protocol-dependent). */
        readonly queueSize?: number;
        /** Absolute deadband asked of a subscription. ≥ 0 */
        readonly deadband?: number;
      }
    >
  >;
  /**
   * The device policy (composition wraps the driver in it once; reads and writes share it) and
   * the reconnection backoff.
   * - `timeoutMs`: time one driver call (connect, read, write, subscribe) may take. @default 2000
   * - `failureThreshold`: consecutive failed calls that open the device breaker and take the link offline. @default 3
   * - `recoveryTimeMs`: how long the breaker stays open before it turns half-open. @default 5000
   * - `reconnect`: @default `{ initialDelayMs: 500, maxDelayMs: 30000, multiplier: 2, jitter: "full" }`
   */
  readonly acquisition?: {
    readonly timeoutMs?: number;
    readonly failureThreshold?: number;
    readonly recoveryTimeMs?: number;
    readonly reconnect?: BackoffOptions;
  };
  /**
   * Batching, overflow policy and spool of the logging pipeline (`spoolMaxBytes`: size limit of
   * the spool file, @default 1 GiB), and the policy of the samples
   * port (`samples.writeBatch`, which is idempotent and retried until stored, spooled or stopped):
   * `writeTimeoutMs` (@default 10000), `retry` backoff (@default `{ initialDelayMs: 200, maxDelayMs: 10000, multiplier: 2, jitter: "full" }`)
   * and `breaker` (@default `{ failureThreshold: 5, recoveryTimeMs: 10000 }`).
   */
  readonly logging?: {
    /** Samples per batch written to the store. @default 1000 */
    readonly maxBatchSize?: number;
    /** Longest a sample waits in memory before its batch is flushed, in ms. @default 1000 */
    readonly maxLatencyMs?: number;
    /** Batches written at once (1 to 64). @default 2 */
    readonly flushConcurrency?: number;
    /** The bound of the in-memory buffer; at least `maxBatchSize`. @default 100000 */
    readonly maxBufferedSamples?: number;
    /**
     * What happens at the bound. `block`: a scan group with logged tags polls only while the
     * buffer (with the scans of polls under way) is below the bound, so it is passed by one scan at
     * most, counted in `health().logging.samplesOverBound` (ADR 0046). `spool` needs `spoolPath`.
     * @default "block"
     */
    readonly overflow?: "block" | "drop-oldest" | "spool";
    readonly spoolPath?: string;
    readonly spoolMaxBytes?: number;
    readonly writeTimeoutMs?: number;
    readonly retry?: BackoffOptions;
    readonly breaker?: { readonly failureThreshold?: number; readonly recoveryTimeMs?: number };
    /**
     * The budget of `stop()` up to and including the drain, in ms, counted from the call: how long
     * it keeps trying to store what is buffered. Closing the driver and the store gets what is left
     * plus 2 s (`STOP_CLOSE_MARGIN_MS`), so `stop()` returns within drainTimeoutMs + 2 s. Set it
     * below your orchestrator's kill timeout. @default 30000
     */
    readonly drainTimeoutMs?: number;
  };
  /**
   * The policy of each other store port, each with its own breaker (`store:<port>`), so a slow
   * history query or a stuck audit table opens only its own breaker. Every call has the port's
   * `timeoutMs`; `retry` applies only to idempotent calls (reads and `recipes.save`), never to
   * `events.append`, `processes.save`, `alarms.record` or `audit.record`.
   *
   * Defaults per port: `timeoutMs` 5000 (`history`: 30000), `breaker` `{ failureThreshold: 5,
   * recoveryTimeMs: 10000 }` (`audit`: `recoveryTimeMs` 2000: every command is refused while it
   * is open, so it half-opens sooner; the audit backlog's background retry is the probe), `retry` `{ maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 2000, multiplier: 2, jitter: "full" }`.
   *
   * @example
   * createControlSystem({ machineId, tags, storePolicies: { audit: { timeoutMs: 1_000 } } });
   */
  readonly storePolicies?: {
    readonly [TPort in "history" | "events" | "processes" | "recipes" | "alarms" | "audit"]?: {
      readonly timeoutMs?: number;
      readonly breaker?: { readonly failureThreshold?: number; readonly recoveryTimeMs?: number };
      /** The backoff, and `maxAttempts`: attempts in all, the first included (an integer ≥ 1). */
      readonly retry?: BackoffOptions & { readonly maxAttempts?: number };
    };
  };
  /**
   * Time each lifecycle call to a port may take, in ms: the store's `open` and `close` and the
   * driver's `close`. One that fails or runs over is reported (`lifecycle-step-fail`,
   * `health().lifecycle.lastError`) and the start or stop goes on from there: a stop still
   * closes the store and ends `stopped`, so `start()` works again; a start fails (or, with a
   * spool, starts degraded) as if the store could not be opened. @default 30000
   */
  readonly lifecycleTimeoutMs?: number;
  /** ISA-18.2 alarm definitions on the tags. */
  readonly alarms?: readonly AlarmDefinitionInput[];
  /** The machine's state model and the safe state applied on abort and interlock trips. */
  readonly machine?: {
    readonly model?: "kiln" | "packml";
    /**
     * The writes that make the machine safe, in order: each a writable tag of `tags` with a value
     * that fits it (checked like any write), **each tag at most once** (a tag listed again is
     * refused: it would leave two values the tag must end with).
     * @throws `KILN_VALIDATION` from `createControlSystem` naming the entry:
     *   `machine.safeState[3].tag` (unknown, read-only, or already listed),
     *   `machine.safeState[3].value` (`value[1]` for an array tag's element).
     * @default []
     */
    readonly safeState?: readonly { readonly tag: string; readonly value: TagValue }[];
  };
  /**
   * Who may do what. `roles` replaces the default role table (viewer, operator, engineer,
   * admin); `operatorWritableTags` (patterns, `*` wildcard) lists the tags operators may write.
   */
  readonly authorization?: {
    readonly roles?: RoleTable;
    readonly operatorWritableTags?: readonly string[];
  };
  /** Recipe execution settings. */
  readonly recipes?: { readonly progressSaveIntervalMs?: number };
  /**
   * The audit trail (IEC 62443-3-3 CR 2.8–2.10). Commands fail closed: one whose entry cannot
   * be made durable (stored, or journaled when `backlog.path` is set) is refused with
   * `KILN_AUDIT_UNAVAILABLE` and not executed.
   * - `source`: recorded as the source of commands whose principal names none (IEC 62443-3-3
   *   CR 2.8 asks for one on every entry); at most 256 characters. @default `"kiln:<machineId>"`
   * - `backlog.path`: a journal file for entries the store cannot take yet; they survive a
   *   restart and are written in order once the store is back. @default none (memory only)
   * - `backlog.maxEntries` (@default 10000), `backlog.maxBytes` (journal size, @default 64 MiB)
   * - `backlog.whenFull`: `refuse-commands` (@default) or `drop-oldest` (reported by `audit-entry-drop` and recorded as an `audit.drop` entry).
   * - `runWithoutDurableAudit`: actions that act at once, without waiting for their entry
   *   (safety functions); the entry follows: stored, or kept (journaled when possible), retried
   *   and reported. Each must be a Kiln command's action (a permission other than `read`;
   *   anything else is refused `KILN_VALIDATION` naming `audit.runWithoutDurableAudit[i]`).
   *   @default ["recipe.abort", "recipe.pause"]
   *
   * @example
   * createControlSystem({ machineId, tags, audit: {
   *   backlog: { path: "/var/lib/kiln/audit.journal" },
   *   runWithoutDurableAudit: ["recipe.abort", "alarm.acknowledge"],
   * } });
   */
  readonly audit?: {
    readonly source?: string;
    readonly backlog?: {
      readonly path?: string;
      readonly maxEntries?: number;
      readonly maxBytes?: number;
      readonly whenFull?: "refuse-commands" | "drop-oldest";
    };
    readonly runWithoutDurableAudit?: string[];
  };
  /** Overrides registrations in the system's container (swap a driver, a store, a clock...). */
  readonly register?: (registry: ServiceRegistry) => void;
  /**
   * Source of randomness in `[0, 1)` for the jitter of every backoff the system computes: the
   * driver's reconnects, the store ports' retries, the background store open and the audit
   * backlog's retries. Inject a seeded one to make a test's timings repeatable.
   * @default Math.random
   */
  readonly random?: () => number;
}

/** Mutual assignability: the written-out option types above stay the schemas' input types. */
type SameShape<TLeft, TRight> = [TLeft] extends [TRight] ? ([TRight] extends [TLeft] ? true : false) : false;
type Written<TKey extends keyof ControlSystemOptions> = NonNullable<ControlSystemOptions[TKey]>;
const optionTypesMatchSchemas: [
  SameShape<Written<"scanGroups">[string], z.input<typeof scanGroupSchema>>,
  SameShape<Written<"acquisition">, NonNullable<z.input<typeof acquisitionSchema>>>,
  SameShape<Written<"logging">, NonNullable<z.input<typeof loggingSchema>>>,
  SameShape<Written<"storePolicies">, NonNullable<z.input<typeof storePoliciesSchema>>>,
  SameShape<Written<"audit">, NonNullable<z.input<typeof auditSchema>>>,
] = [true, true, true, true, true];
void optionTypesMatchSchemas;

/** The options with every default applied. */
export type ResolvedControlSystemOptions = Omit<
  z.output<typeof optionsSchema>,
  "alarms" | "register" | "authorization"
> & {
  readonly alarms: readonly AlarmDefinitionInput[];
  readonly authorization: { readonly roles?: RoleTable; readonly operatorWritableTags: readonly string[] };
  readonly register?: (registry: ServiceRegistry) => void;
};

/**
 * Validates control system options and applies defaults. Cross-checks the tags: every tag's
 * scan group must exist, and every safe-state entry must name a writable tag.
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) listing every bad field by path, e.g.
 *   `logging.maxBatchSize` or `tags.chamber.pressure.scanGroup`.
 */
export function resolveControlSystemOptions(input: ControlSystemOptions): ResolvedControlSystemOptions {
  const result = optionsSchema.safeParse(input);
  if (!result.success) throw new KilnValidationError("control system options", issuesFromZod(result.error));
  const options = result.data;
  const issues: ValidationIssue[] = [];
  for (const tag of options.tags.list()) {
    if (!options.scanGroups[tag.scanGroup]) {
      issues.push({
        path: `tags.${tag.name}.scanGroup`,
        message: `scan group "${tag.scanGroup}" is not defined in scanGroups (${Object.keys(options.scanGroups).join(", ")})`,
      });
    }
  }
  // The safe state's rules live in one place, the recipe executor's too (review 15m, M2).
  const safeStateProblems = safeStateIssues(options.tags, options.machine.safeState, "machine.safeState");
  issues.push(...safeStateProblems);
  // A frozen copy: the host's array changed later does not change the safe state.
  if (safeStateProblems.length === 0)
    for (const entry of options.machine.safeState) (entry as { value: TagValue }).value = frozenTagValue(entry.value);
  if (issues.length > 0) throw new KilnValidationError("control system options", issues);
  return options as ResolvedControlSystemOptions;
}
