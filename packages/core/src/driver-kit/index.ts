export { abortError, raceAbort, untilAbort } from "./abort";
export { reconnectDelay, type ReconnectBackoff } from "./backoff";
export { ConnectionLifecycle, type ConnectionLifecycleOptions, type ReconnectOptions } from "./connection-lifecycle";
export {
  EndpointHealth,
  type EndpointHealthOptions,
  type EndpointHealthSnapshot,
  type EndpointState,
} from "./endpoint-health";
export type { Disposer } from "../domain/disposer";
export {
  KilnError,
  KilnValidationError,
  isRetryable,
  type KilnErrorCode,
  type ValidationIssue,
} from "../domain/errors";
export { GOOD, QualityCodes, quality, qualityFromStatusCode, type Quality } from "../domain/quality";
export { checkTagValue } from "../domain/tags";
export { issuesFromZod, parseOrThrow } from "../domain/validation";
