export {
  CircuitBreaker,
  isBreakerFailure,
  type CircuitBreakerOptions,
  type CircuitBreakerSnapshot,
  type CircuitState,
  type CircuitStateChange,
} from "./circuit-breaker";
export { CallPolicy, type CallPolicyBreakerOptions, type CallPolicyOptions } from "./policy";
export {
  RETRY_JITTERS,
  backoffDelay,
  createRetryPolicy,
  retry,
  type RetryInfo,
  type RetryJitter,
  type RetryOptions,
  type RetryPolicy,
  type RetryPolicyOptions,
} from "./retry";
export { withTimeout, type TimeoutOptions } from "./timeout";
