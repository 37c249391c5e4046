export {
  AuditedCommandRunner,
  type AuditBacklogOptions,
  DENIAL_CODES,
  type AuditedCommand,
  type AuditedCommandRunnerOptions,
  type CommandContext,
} from "./audited-command";
export {
  Authorizer,
  DEFAULT_ENGINEER_WRITE_STATES,
  DEFAULT_OPERATOR_WRITE_STATES,
  PERMISSIONS,
  defaultRoleTable,
  principalSchema,
  snapshotPrincipal,
  type AuthorizationContext,
  type AuthorizerOptions,
  type DefaultRoleTableOptions,
  type Permission,
  type PermissionGrant,
  type Principal,
  type RoleTable,
} from "./authorization";
export { authorizeRecipeSave, authorizeRecipeStart, type RecipeWriteRequest } from "./recipe-authorization";
