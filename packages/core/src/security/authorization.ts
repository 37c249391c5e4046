import { z } from "zod";
import { KilnError } from "../domain/errors";
import { parseOrThrow } from "../domain/validation";

/** Who issues a command: an id (user, service account) and the roles the host gives it. */
export interface Principal {
  /** Stable id of the person or service; recorded in the audit log. */
  readonly id: string;
  /** Role names, looked up in the {@link RoleTable}. Unknown roles grant nothing. */
  readonly roles: readonly string[];
}

/** zod schema of a {@link Principal}. */
export const principalSchema = z.object({
  id: z.string().min(1, "a principal needs an id"),
  roles: z.array(z.string()),
});

/** The permissions Kiln's commands check. A host may define more in its own role table. */
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
 * One entry of a role: a permission (`"*"`: every permission), optionally limited to targets
 * matching one of `targets` (`*` in a pattern matches any run of characters:
 * `"valve.*"`, `"reactor-1/*"`).
 */
export type PermissionGrant =
  Permission | "*" | { readonly permission: Permission | "*"; readonly targets: readonly string[] };

/** Role name → what it grants. Replaceable by the host. */
export type RoleTable = Readonly<Record<string, readonly PermissionGrant[]>>;

/** Options of {@link defaultRoleTable}. */
export interface DefaultRoleTableOptions {
  /**
   * Tags operators may write (patterns, `*` wildcard), e.g. `["heater.setpoint", "mfc.*"]`.
   * Engineers and admins may write every writable tag. @default [] (operators write no tag)
   */
  readonly operatorWritableTags?: readonly string[];
}

/**
 * The default roles:
 *
 * | role       | grants                                                                                         |
 * |------------|------------------------------------------------------------------------------------------------|
 * | `viewer`   | `read`                                                                                         |
 * | `operator` | viewer + `recipe.start/pause/resume/abort`, `alarm.acknowledge/shelve/unshelve`, `tag.write` of `operatorWritableTags` |
 * | `engineer` | operator + `recipe.save`, `tag.write` of any tag, `alarm.suppress`, `alarm.out-of-service`    |
 * | `admin`    | everything (`*`), including `machine.mode` and `machine.maintenance`                          |
 *
 * Whether a tag is writable at all (its access) is checked by the write path, not here.
 */
export function defaultRoleTable(options: DefaultRoleTableOptions = {}): RoleTable {
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
    { permission: "tag.write", targets: [...(options.operatorWritableTags ?? [])] },
  ];
  const engineer: PermissionGrant[] = [
    ...operator,
    "recipe.save",
    "tag.write",
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
 * authorizer.check({ id: "ana", roles: ["operator"] }, "tag.write", "heater.setpoint"); // passes
 * authorizer.check({ id: "ana", roles: ["operator"] }, "tag.write", "valve.tma"); // throws KILN_FORBIDDEN
 */
export class Authorizer {
  readonly #roles: RoleTable;
  readonly #patterns = new Map<string, RegExp>();

  constructor(options: AuthorizerOptions = {}) {
    this.#roles = options.roles ?? defaultRoleTable();
  }

  /** The role table in use. */
  get roles(): RoleTable {
    return this.#roles;
  }

  /**
   * True when one of the principal's roles grants `permission` on `target`. A grant limited to
   * targets never matches a call without a target. A malformed principal is allowed nothing.
   */
  can(principal: Principal, permission: Permission, target?: string): boolean {
    if (!principalSchema.safeParse(principal).success) return false;
    return principal.roles.some((role) =>
      (Object.hasOwn(this.#roles, role) ? this.#roles[role]! : []).some((grant) =>
        this.#grants(grant, permission, target),
      ),
    );
  }

  /**
   * Passes when {@link can} is true.
   * @throws KilnValidationError (`KILN_VALIDATION`) when `principal` is malformed (no id, roles not strings).
   * @throws KilnError `KILN_FORBIDDEN` with `details: { principal, roles, permission, target }` otherwise.
   */
  check(principal: Principal, permission: Permission, target?: string): void {
    parseOrThrow(principalSchema, principal, "principal");
    if (this.can(principal, permission, target)) return;
    const on = target === undefined ? "" : ` on "${target}"`;
    throw new KilnError(
      "KILN_FORBIDDEN",
      `"${principal.id}" (roles: ${principal.roles.join(", ") || "none"}) may not ${permission}${on}: ask for a role that grants it.`,
      { details: { principal: principal.id, roles: [...principal.roles], permission, target } },
    );
  }

  #grants(grant: PermissionGrant, permission: Permission, target: string | undefined): boolean {
    if (typeof grant === "string") return grant === "*" || grant === permission;
    if (grant.permission !== "*" && grant.permission !== permission) return false;
    if (target === undefined) return false;
    return grant.targets.some((pattern) => this.#pattern(pattern).test(target));
  }

  #pattern(pattern: string): RegExp {
    let regex = this.#patterns.get(pattern);
    if (regex === undefined) {
      const source = pattern
        .split("*")
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
        .join(".*");
      regex = new RegExp(`^${source}$`, "s");
      this.#patterns.set(pattern, regex);
    }
    return regex;
  }
}

function deepFreeze<TValue>(value: TValue): TValue {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
