// The real event loop's check phase, also under a test's fake timers (they replace the globals, not
// node:timers' exports): the turn is about letting sockets and timers run, not about simulated time.
import { clearImmediate, setImmediate } from "node:timers";

/**
 * Settles as `work` does, but never before the event loop has turned once since the call (one
 * `setImmediate`, the check phase after I/O polling). A driver call that can answer without I/O (a
 * Modbus read of units all offline, every tag a learned hole) otherwise settles in microtasks
 * only, and a caller reading in a tight loop (`while (running) await driver.read(tags)`) never lets
 * a timer, a socket or another scan group run (adversarial review adv12x, LOW). A call that did
 * I/O has let the loop turn already and pays nothing more than one `setImmediate` scheduled.
 *
 * @param work - the call's promise, started by the caller just before.
 * @returns what `work` resolves to; rejects as `work` rejects, after the same turn.
 */
export async function afterEventLoopTurn<T>(work: Promise<T>): Promise<T> {
  let turned = false;
  const immediate = setImmediate(() => {
    turned = true;
  });
  try {
    return await work;
  } finally {
    clearImmediate(immediate);
    if (!turned) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
