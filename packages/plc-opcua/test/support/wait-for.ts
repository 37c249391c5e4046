/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. @default 15_000 */
  readonly timeoutMs?: number;
  /** Time between checks. @default 20 */
  readonly intervalMs?: number;
  /** Says what was awaited, for the timeout error. */
  readonly what?: string;
}

/**
 * Polls `check` until it returns something other than `undefined` or `false` and returns that,
 * or rejects after `timeoutMs`. Tests wait on conditions with this, never with fixed sleeps.
 */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitForOptions = {},
): Promise<T> {
  const { timeoutMs = 15_000, intervalMs = 20, what = "condition" } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const result = await check();
      if (result !== undefined && result !== false) return result;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
