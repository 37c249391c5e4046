import { deepFreeze } from "../domain/deep-freeze";
import { z } from "zod";
import { KilnError, KilnValidationError, type ValidationIssue } from "../domain/errors";
import { formatPath, issuesFromZod, parseOrThrow } from "../domain/validation";
import { KILN_MACHINE_STATES } from "../fsm/kiln-machine-model";
import { PACKML_STATES } from "../fsm/packml-model";
import {
  auditedText,
  IDENTIFIER_CHARACTER_MESSAGE,
  identifierCharacterProblem,
  INVISIBLE_CHARACTERS,
  NAME_MAX_LENGTH,
  ROLE_MAX_LENGTH,
  ROLES_MAX_COUNT,
  visibleText,
  withVisibleMessage,
} from "./command-input";
import { TagPattern } from "./tag-pattern";

/** Who issues a command: an id (user, service account) and the roles the host gives it. */
export interface Principal {
  /** Stable id of the person or service; recorded in the audit log. */
  readonly id: string;
  /** Role names, looked up in the {@link RoleTable}. Unknown roles grant nothing. */
  readonly roles: readonly string[];
  /**
   * The session or client this principal acts through, as the host authenticated it (e.g.
   * `hmi-2/session-81f`); recorded as the audit entry's `source` (IEC 62443-3-3 CR 2.8).
   * @default the system's `audit.source`
   */
  readonly source?: string;
}

/**
 * A string of at most `max` UTF-16 code units, the one length rule of every name a command is
 * given (zod's own `max` counts code points, so it let 256 emoji, 512 units, through).
 */
function textAtMost(max: number) {
  return z
    .string()
    .refine((text) => text.length <= max, `must be at most ${max} characters`)
    .refine((text) => !identifierCharacterProblem(text), IDENTIFIER_CHARACTER_MESSAGE);
}

/**
 * True for an id in parentheses (`(system)`, `(audit)`, `(invalid principal)`): the audit trail
 * names Kiln's own entries so (the system's actions, the writer's summaries, placeholders), so
 * no caller's principal may carry one (adversarial review 15x, F2). Judged on the id as it reads:
 * after Unicode compatibility normalisation (NFKC: fullwidth `（system）`, small and superscript
 * parentheses read as `(` and `)`) and without spaces around it (` (system) `) (adv15g MEDIUM-1).
 */
export function isReservedPrincipalId(id: string): boolean {
  // Only its ends are normalised: an id of 50 MB is judged in constant time (it is refused by length anyway).
  const trimmed = id.trim();
  return (
    trimmed.slice(0, 16).normalize("NFKC").trimStart().startsWith("(") &&
    trimmed.slice(-16).normalize("NFKC").trimEnd().endsWith(")")
  );
}

/**
 * A principal id an audit entry takes, made from an id an adapter was given by its host (an OPC UA
 * server's `identify`) that it must audit a refusal under even when the id is not a valid one
 * ({@link principalSchema}): `id` itself when valid; else each character the identifier rule refuses
 * (control, format, default-ignorable, line-separator characters, spaces but U+0020, lone surrogates:
 * `IDENTIFIER_CHARACTER_MESSAGE`) replaced by U+FFFD, the result cut to
 * `NAME_MAX_LENGTH` (256) UTF-16 code units without splitting a surrogate pair, an id in parentheses
 * (reserved for Kiln's own entries: {@link isReservedPrincipalId}) prefixed with U+FFFD so it cannot
 * pass for one of them, and `(empty principal id)` for an empty id. Audited as given, an invalid id
 * made the entry's reason "Invalid principal" and hid what was refused (adv20e F4). The one copy of
 * the principal id rule for adapters (issue 15). Never throws.
 */
export function auditablePrincipalId(id: string): string {
  if (id === "") return "(empty principal id)";
  const replaced = id.replace(INVISIBLE_CHARACTERS, "\uFFFD");
  const marked = isReservedPrincipalId(replaced) ? `\uFFFD${replaced}` : replaced;
  // cut before a pair rather than split it (the half left would be a lone surrogate)
  return marked.slice(0, NAME_MAX_LENGTH).replace(/[\uD800-\uDBFF]$/u, "");
}

const RESERVED_PRINCIPAL_MESSAGE =
  "must not be in parentheses: such ids, like (system) and (audit), are reserved for Kiln's own audit entries";

/**
 * zod schema of a {@link Principal}: an id of 1 to 256 characters, not in parentheses (reserved:
 * {@link isReservedPrincipalId}), at most 64 roles of at most
 * 128 characters each, a source of at most 256 characters, none holding a control or format
 * character (Unicode Cc, Cf) (UTF-16 code units; `NAME_MAX_LENGTH`,
 * `ROLES_MAX_COUNT`, `ROLE_MAX_LENGTH`), so no caller can make an audit entry unboundedly large.
 */
export const principalSchema = z.object({
  id: textAtMost(NAME_MAX_LENGTH)
    .refine((text) => text !== "", "a principal needs an id")
    .refine((text) => !isReservedPrincipalId(text), RESERVED_PRINCIPAL_MESSAGE),
  roles: z.array(textAtMost(ROLE_MAX_LENGTH)).max(ROLES_MAX_COUNT, `must hold at most ${ROLES_MAX_COUNT} roles`),
  source: textAtMost(NAME_MAX_LENGTH).optional(),
});

/**
 * Reads a principal once and returns a frozen copy: `id` and `roles` (and each role) are read
 * exactly once, so a principal whose getters answer differently on each read is checked and
 * audited as what it was at the command boundary, not as what it says later.
 *
 * @returns the raw values read (for auditing a malformed principal) and, when they pass
 * {@link principalSchema}, the frozen principal. A snapshot given again is returned as is, so
 * a command can read its principal at the call and hand the snapshot on.
 */
export function snapshotPrincipal(input: unknown): PrincipalSnapshot {
  if (typeof input === "object" && input !== null && SNAPSHOTS.has(input)) return input as PrincipalSnapshot;
  const read = readPrincipalOnce(input);
  Object.freeze(read);
  SNAPSHOTS.add(read);
  return read;
}

/**
 * A principal as read once by {@link snapshotPrincipal}: the raw values read (for auditing a
 * malformed principal) and, when they are valid, the frozen principal. Passing a snapshot where
 * a principal is expected reuses it (it is not read again).
 */
export interface PrincipalSnapshot {
  readonly id: unknown;
  readonly roles: unknown;
  readonly source?: unknown;
  readonly principal?: Principal;
  readonly error?: KilnValidationError;
}

/** The snapshots {@link snapshotPrincipal} made: reused as they are. */
const SNAPSHOTS = new WeakSet<object>();

function readPrincipalOnce(input: unknown): PrincipalSnapshot {
  let id: unknown;
  let roles: unknown;
  let origin: unknown;
  try {
    const source = input as
      { readonly id?: unknown; readonly roles?: unknown; readonly source?: unknown } | null | undefined;
    id = source?.id;
    const rawRoles = source?.roles;
    roles = Array.isArray(rawRoles) ? Array.from(rawRoles as unknown[]) : rawRoles;
    origin = source?.source;
  } catch (error) {
    return {
      id,
      roles,
      error: new KilnValidationError("principal", [{ path: "", message: "the principal could not be read" }], {
        cause: error,
      }),
    };
  }
  const parsed = principalSchema.safeParse(origin === undefined ? { id, roles } : { id, roles, source: origin });
  if (!parsed.success) {
    return { id, roles, source: origin, error: new KilnValidationError("principal", issuesFromZod(parsed.error)) };
  }
  const { source } = parsed.data;
  const principal: Principal = Object.freeze({
    id: parsed.data.id,
    roles: Object.freeze([...parsed.data.roles]),
    ...(source === undefined ? {} : { source }),
  });
  return { id, roles, ...(source === undefined ? {} : { source }), principal };
}

/**
 * The permissions Kiln's commands check. A host may define more in its own role table.
 * `read` is not checked by the in-process API (the CVT, history and alarm reads take no
 * principal; guarding them is the host's, which owns the process): it is the permission a
 * northbound server (OPC UA server, Sparkplug host commands) checks for a remote client with
 * `authorizer.can(principal, "read", tagName)` before it serves a value.
 */
export const PERMISSIONS = [
  "read",
  "recipe.start",
  "recipe.pause",
  "recipe.resume",
  "recipe.abort",
  "recipe.save",
  "tag.write",
  "alarm.acknowledge",
  "alarm.shelve",
  "alarm.unshelve",
  "alarm.suppress",
  "alarm.out-of-service",
  "machine.mode",
  "machine.maintenance",
] as const;

/** A permission name: one of {@link PERMISSIONS}, or a host-defined one. */
export type Permission = (typeof PERMISSIONS)[number] | (string & {});

/**
 * One entry of a role: a permission (`"*"`: every permission, one of {@link PERMISSIONS}, or a
 * host's own name outside Kiln's `recipe.`, `tag.`, `alarm.`, `machine.` namespaces), optionally limited to targets
 * matching one of `targets` (`*` in a pattern matches any run of characters:
 * `"valve.*"`, `"reactor-1/*"`) and to machine states (`states`: the grant applies only when
 * the command is checked in one of them; a check that names no state never matches it).
 */
export type PermissionGrant =
  | Permission
  | "*"
  | {
      readonly permission: Permission | "*";
      /** Target patterns; omitted: any target. */
      readonly targets?: readonly string[];
      /** Machine states (exact names of the kiln or packml model, e.g. `"idle"`) in which the grant applies; omitted: every state. */
      readonly states?: readonly string[];
    };

/** Where a permission is checked. */
export interface AuthorizationContext {
  /**
   * The machine's current state. Grants limited to `states` match only when it is one of them.
   */
  readonly machineState?: string;
  /**
   * Ignore the `states` of grants: asks whether the principal may use the permission on the
   * target in some state (what a refusal may say about the state). A recipe's write set is not
   * checked this way but in the state its process starts from (ADR 0010 addendum).
   */
  readonly inAnyState?: boolean;
}

/**
 * Machine states in which the default operator role may write its tags: no process is active,
 * the machine is not in maintenance or faulted (`idle` of both models, `stopped` of PackML).
 */
export const DEFAULT_OPERATOR_WRITE_STATES: readonly string[] = Object.freeze(["idle", "stopped"]);

/**
 * Machine states in which the default engineer role may write tags: no process is active
 * (`idle`, `maintenance`, `error` of the Kiln model; `idle`, `stopped`, `completed`,
 * `aborted` of PackML).
 */
export const DEFAULT_ENGINEER_WRITE_STATES: readonly string[] = Object.freeze([
  "idle",
  "stopped",
  "completed",
  "aborted",
  "error",
  "maintenance",
]);

/** Role name → what it grants. Replaceable by the host. */
export type RoleTable = Readonly<Record<string, readonly PermissionGrant[]>>;

/** Options of {@link defaultRoleTable}. */
export interface DefaultRoleTableOptions {
  /**
   * Tags operators may write (patterns, `*` wildcard), e.g. `["heater.setpoint", "mfc.*"]`.
   * Engineers and admins may write every writable tag. @default [] (operators write no tag)
   */
  readonly operatorWritableTags?: readonly string[];
  /** Machine states in which operators may write those tags. @default DEFAULT_OPERATOR_WRITE_STATES */
  readonly operatorWriteStates?: readonly string[];
  /** Machine states in which engineers may write tags. @default DEFAULT_ENGINEER_WRITE_STATES */
  readonly engineerWriteStates?: readonly string[];
}

/**
 * The default roles:
 *
 * | role       | grants                                                                                         |
 * |------------|------------------------------------------------------------------------------------------------|
 * | `viewer`   | `read`                                                                                         |
 * | `operator` | viewer + `recipe.start/pause/resume/abort`, `alarm.acknowledge/shelve/unshelve`, `tag.write` of `operatorWritableTags` in `operatorWriteStates` |
 * | `engineer` | operator + `recipe.save`, `tag.write` of any tag in `engineerWriteStates`, `alarm.suppress`, `alarm.out-of-service` |
 * | `admin`    | everything (`*`) in every state, including `machine.mode` and `machine.maintenance`          |
 *
 * So by default nobody but an admin writes a tag by hand while a process runs (the process owns
 * the outputs), and operators do not write in maintenance or after a fault (ADR 0010).
 * Whether a tag is writable at all (its access) is checked by the write path, not here.
 */
export function defaultRoleTable(options: DefaultRoleTableOptions = {}): RoleTable {
  const problems = defaultRoleTableOptionProblems(options);
  if (problems.length > 0) throw new KilnValidationError("default role table options", formatProblems(problems));
  const viewer: PermissionGrant[] = ["read"];
  const operator: PermissionGrant[] = [
    ...viewer,
    "recipe.start",
    "recipe.pause",
    "recipe.resume",
    "recipe.abort",
    "alarm.acknowledge",
    "alarm.shelve",
    "alarm.unshelve",
    {
      permission: "tag.write",
      targets: [...(options.operatorWritableTags ?? [])],
      states: [...(options.operatorWriteStates ?? DEFAULT_OPERATOR_WRITE_STATES)],
    },
  ];
  const engineer: PermissionGrant[] = [
    ...operator,
    "recipe.save",
    { permission: "tag.write", states: [...(options.engineerWriteStates ?? DEFAULT_ENGINEER_WRITE_STATES)] },
    "alarm.suppress",
    "alarm.out-of-service",
  ];
  return deepFreeze({ viewer, operator, engineer, admin: ["*"] });
}

/** Options of {@link Authorizer}. */
export interface AuthorizerOptions {
  /** The role table. @default defaultRoleTable() */
  readonly roles?: RoleTable;
}

/**
 * Decides whether a principal may use a permission on a target, from a {@link RoleTable}.
 * A principal holds the union of its roles' grants; unknown roles grant nothing.
 *
 * @example
 * const authorizer = new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) });
 * const ana = { id: "ana", roles: ["operator"] };
 * authorizer.check(ana, "tag.write", "heater.setpoint", { machineState: "idle" }); // passes
 * authorizer.check(ana, "tag.write", "heater.setpoint", { machineState: "processing" }); // throws KILN_FORBIDDEN (operators write only in idle, stopped)
 * authorizer.check(ana, "tag.write", "valve.tma", { machineState: "idle" }); // throws KILN_FORBIDDEN
 * // (kept true by the test "the TSDoc example of Authorizer holds" in authorization.test.ts)
 */
export class Authorizer {
  readonly #roles: RoleTable;
  readonly #patterns = new Map<string, TagPattern>();

  /**
   * @throws KilnValidationError (`KILN_VALIDATION`) when `options.roles` breaks a rule of role
   * tables (see {@link PermissionGrant}: only `permission`, `targets`, `states`; arrays of
   * strings; known states; no misspelt Kiln permission), naming each bad grant by path (e.g.
   * `roles.operator[0].target`).
   */
  constructor(options: AuthorizerOptions = {}) {
    this.#roles = options.roles === undefined ? defaultRoleTable() : validRoleTable(options.roles, ["roles"]);
  }

  /** The role table in use. */
  get roles(): RoleTable {
    return this.#roles;
  }

  /**
   * True when one of the principal's roles grants `permission` on `target` in `context`. A grant
   * limited to targets never matches a call without a target; one limited to states never
   * matches a call without a machine state (unless `context.inAnyState`). A malformed principal
   * is allowed nothing.
   */
  can(principal: Principal, permission: Permission, target?: string, context: AuthorizationContext = {}): boolean {
    if (!principalSchema.safeParse(principal).success) return false;
    return principal.roles.some((role) =>
      (Object.hasOwn(this.#roles, role) ? this.#roles[role]! : []).some((grant) =>
        this.#grants(grant, permission, target, context),
      ),
    );
  }

  /**
   * Passes when {@link can} is true.
   * @throws KilnValidationError (`KILN_VALIDATION`) when `principal` is malformed (no id, roles not strings).
   * @throws KilnError `KILN_FORBIDDEN` with `details: { principal, roles, permission, target }` otherwise.
   */
  check(principal: Principal, permission: Permission, target?: string, context: AuthorizationContext = {}): void {
    parseOrThrow(principalSchema, principal, "principal");
    if (this.can(principal, permission, target, context)) return;
    throw this.forbidden(principal, permission, target, context);
  }

  /**
   * The `KILN_FORBIDDEN` error for a refused check. It names `shown` (what the caller itself
   * named; pass undefined to name nothing), escaped and bounded as an audit entry's target
   * (`auditedText`: control and format characters written out as `\u{XXXX}`, cut to 256 code
   * units with its original length; the principal is refused before its target is validated,
   * ADR 0007), and, only when the principal could use the
   * permission on it in another state, the machine state: a principal without the right learns
   * nothing about the machine.
   */
  forbidden(
    principal: Principal,
    permission: Permission,
    shown: string | undefined,
    context: AuthorizationContext = {},
  ): KilnError {
    // The caller's text, escaped and bounded as in an audit entry: a 300 kB target makes no 300 kB
    // message (review 15g, L1), and a malformed one (refused before it is validated) no raw
    // control character (fix20d).
    const named = shown === undefined ? undefined : auditedText(shown, NAME_MAX_LENGTH);
    const on = named === undefined ? "" : ` on "${named}"`;
    // Granted in some machine state: the refusal is the state rule, not a missing role (review 15z, L8).
    // On the name as authorized (authorizedTarget): a longer one is no target, at bounded cost (adv20d F1).
    const checked = shown !== undefined && shown.length <= NAME_MAX_LENGTH ? shown : undefined;
    const stateRule = !context.inAnyState && this.can(principal, permission, checked, { inAnyState: true });
    const inState =
      stateRule && context.machineState !== undefined ? ` in machine state "${context.machineState}"` : "";
    const why = !stateRule
      ? "ask for a role that grants it"
      : context.machineState === undefined
        ? "a role grants it only in some machine states, and no machine state was given (pass context.machineState)"
        : "a role grants it only in other machine states";
    // Every caller-influenced part written out (visibleText), so the message is visible text as a
    // whole and an audit reason records it as is, each character escaped once (fix20e).
    return withVisibleMessage(
      new KilnError(
        "KILN_FORBIDDEN",
        `"${auditedText(principal.id, NAME_MAX_LENGTH)}" (roles: ${visibleText(principal.roles.join(", ")) || "none"}) may not ${visibleText(permission)}${on}${inState === "" ? "" : visibleText(inState)}: ${why}.`,
        {
          details: {
            principal: principal.id,
            roles: [...principal.roles],
            permission,
            target: named,
            ...(inState === "" ? {} : { machineState: context.machineState }),
          },
        },
      ),
    );
  }

  #grants(
    grant: PermissionGrant,
    permission: Permission,
    target: string | undefined,
    context: AuthorizationContext,
  ): boolean {
    if (typeof grant === "string") return grant === "*" || grant === permission;
    if (grant.permission !== "*" && grant.permission !== permission) return false;
    if (grant.states !== undefined && context.inAnyState !== true) {
      if (context.machineState === undefined || !grant.states.includes(context.machineState)) return false;
    }
    if (grant.targets === undefined) return true;
    if (target === undefined) return false;
    return grant.targets.some((pattern) => this.#pattern(pattern).test(target));
  }

  #pattern(source: string): TagPattern {
    let pattern = this.#patterns.get(source);
    if (pattern === undefined) {
      pattern = new TagPattern(source);
      this.#patterns.set(source, pattern);
    }
    return pattern;
  }
}

/** A problem found in a role table or its options: where (zod-style path) and the rule broken. */
export interface RoleTableProblem {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** Every state of Kiln's two machine models: the names a grant's `states` may hold. */
const KNOWN_STATES: ReadonlySet<string> = new Set<string>([...KILN_MACHINE_STATES, ...PACKML_STATES]);
const KNOWN_PERMISSIONS: ReadonlySet<string> = new Set<string>(PERMISSIONS);
/** Prefixes of Kiln's own permissions: a host-defined permission may not start with one. */
const KILN_PERMISSION_PREFIXES = ["recipe.", "tag.", "alarm.", "machine."] as const;
const GRANT_KEYS: ReadonlySet<string> = new Set(["permission", "targets", "states"]);
const DEFAULT_TABLE_KEYS: ReadonlySet<string> = new Set([
  "operatorWritableTags",
  "operatorWriteStates",
  "engineerWriteStates",
]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function formatProblems(problems: readonly RoleTableProblem[]): ValidationIssue[] {
  return problems.map((problem) => ({ path: formatPath(problem.path), message: problem.message }));
}

function permissionProblem(permission: unknown): string | undefined {
  if (typeof permission !== "string" || permission === "") return "must be a permission name (a non-empty string)";
  if (permission === "*" || KNOWN_PERMISSIONS.has(permission)) return undefined;
  if (permission === "read" || KILN_PERMISSION_PREFIXES.some((prefix) => permission.startsWith(prefix))) {
    return `unknown permission "${permission}": Kiln's are ${PERMISSIONS.join(", ")}; a host-defined permission may not start with ${KILN_PERMISSION_PREFIXES.join(", ")}`;
  }
  return undefined;
}

function stringListProblems(
  value: unknown,
  path: readonly PropertyKey[],
  what: "patterns" | "states",
): RoleTableProblem[] {
  if (!Array.isArray(value)) {
    return [
      {
        path,
        message: `must be an array of ${what === "patterns" ? "target patterns" : "machine state names"} (strings)`,
      },
    ];
  }
  const problems: RoleTableProblem[] = [];
  value.forEach((item: unknown, index) => {
    if (typeof item !== "string" || item === "") {
      problems.push({ path: [...path, index], message: "must be a non-empty string" });
    } else if (what === "states" && !KNOWN_STATES.has(item)) {
      problems.push({
        path: [...path, index],
        message: `unknown machine state "${item}" (the states of the kiln and packml models: ${[...KNOWN_STATES].join(", ")})`,
      });
    }
  });
  return problems;
}

/**
 * The rules of a {@link RoleTable}, checked in one place for `createControlSystem`
 * (`authorization.roles`), the {@link Authorizer} constructor and {@link defaultRoleTable}, so a
 * misspelt grant is refused instead of granting more than meant (issue 15):
 * - the table is an object of role name (1 to `ROLE_MAX_LENGTH` characters) → array of grants;
 * - a grant is a permission name or an object with only `permission`, `targets` and `states`
 *   (an unknown key, e.g. `target`, is refused: ignoring it would widen the grant);
 * - a permission is `"*"`, one of {@link PERMISSIONS}, or a host-defined name not starting with
 *   `recipe.`, `tag.`, `alarm.`, `machine.` (and not `read`), so a misspelt Kiln permission is refused;
 * - `targets` is an array of non-empty pattern strings; `states` an array of state names of the
 *   kiln or packml model (`KILN_MACHINE_STATES`, `PACKML_STATES`).
 *
 * @returns every problem found, in input order (empty: the table is valid).
 */
export function roleTableProblems(table: unknown, path: readonly PropertyKey[] = []): RoleTableProblem[] {
  if (!isRecord(table)) return [{ path, message: "must be an object mapping role names to arrays of grants" }];
  const problems: RoleTableProblem[] = [];
  for (const [role, grants] of Object.entries(table)) {
    const rolePath = [...path, role];
    if (role === "" || role.length > ROLE_MAX_LENGTH) {
      problems.push({ path: rolePath, message: `a role name must be 1 to ${ROLE_MAX_LENGTH} characters` });
    }
    if (!Array.isArray(grants)) {
      problems.push({ path: rolePath, message: "must be an array of grants" });
      continue;
    }
    grants.forEach((grant: unknown, index) => problems.push(...grantProblems(grant, [...rolePath, index])));
  }
  return problems;
}

function grantProblems(grant: unknown, path: readonly PropertyKey[]): RoleTableProblem[] {
  if (typeof grant === "string") {
    const problem = permissionProblem(grant);
    return problem === undefined ? [] : [{ path, message: problem }];
  }
  if (!isRecord(grant)) {
    return [{ path, message: "must be a permission name or { permission, targets?, states? }" }];
  }
  const problems: RoleTableProblem[] = [];
  for (const key of Object.keys(grant)) {
    if (!GRANT_KEYS.has(key)) {
      problems.push({
        path: [...path, key],
        message: `unknown key "${key}": a grant takes permission, targets, states`,
      });
    }
  }
  const permission = permissionProblem(grant.permission);
  if (permission !== undefined) problems.push({ path: [...path, "permission"], message: permission });
  if (grant.targets !== undefined)
    problems.push(...stringListProblems(grant.targets, [...path, "targets"], "patterns"));
  if (grant.states !== undefined) problems.push(...stringListProblems(grant.states, [...path, "states"], "states"));
  return problems;
}

function defaultRoleTableOptionProblems(options: unknown): RoleTableProblem[] {
  if (!isRecord(options)) return [{ path: [], message: "must be an object" }];
  const problems: RoleTableProblem[] = [];
  for (const key of Object.keys(options)) {
    if (!DEFAULT_TABLE_KEYS.has(key)) {
      problems.push({
        path: [key],
        message: `unknown key "${key}": takes operatorWritableTags, operatorWriteStates, engineerWriteStates`,
      });
    }
  }
  if (options.operatorWritableTags !== undefined) {
    problems.push(...stringListProblems(options.operatorWritableTags, ["operatorWritableTags"], "patterns"));
  }
  for (const key of ["operatorWriteStates", "engineerWriteStates"] as const) {
    if (options[key] !== undefined) problems.push(...stringListProblems(options[key], [key], "states"));
  }
  return problems;
}

/** A deep-frozen copy of a valid role table, or KilnValidationError naming every problem. */
function validRoleTable(table: RoleTable, path: readonly PropertyKey[]): RoleTable {
  const problems = roleTableProblems(table, path);
  if (problems.length > 0) throw new KilnValidationError("role table", formatProblems(problems));
  const copy: Record<string, PermissionGrant[]> = {};
  for (const [role, grants] of Object.entries(table)) {
    const copied = grants.map((grant) =>
      typeof grant === "string"
        ? grant
        : {
            permission: grant.permission,
            ...(grant.targets === undefined ? {} : { targets: [...grant.targets] }),
            ...(grant.states === undefined ? {} : { states: [...grant.states] }),
          },
    );
    // defineProperty: a role named "__proto__" stays a role (an assignment would set the copy's
    // prototype and drop the role silently); lookups use Object.hasOwn.
    Object.defineProperty(copy, role, { value: copied, enumerable: true, writable: true, configurable: true });
  }
  return deepFreeze(copy);
}
