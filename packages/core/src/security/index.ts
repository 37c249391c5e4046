export {
  AuditedCommandRunner,
  DENIAL_CODES,
  type AuditedCommand,
  type AuditedCommandRunnerOptions,
} from "./audited-command";
export {
  Authorizer,
  PERMISSIONS,
  defaultRoleTable,
  principalSchema,
  type AuthorizerOptions,
  type DefaultRoleTableOptions,
  type Permission,
  type PermissionGrant,
  type Principal,
  type RoleTable,
} from "./authorization";
