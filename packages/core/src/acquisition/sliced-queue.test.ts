import { expect, test } from "vitest";
import { SlicedQueue } from "./sliced-queue";

/** A queue whose turns are released by hand, with a log of what ran. */
function manual(sliceSize: number) {
  const turns: (() => void)[] = [];
  const queue = new SlicedQueue({
    sliceSize,
    yieldToLoop: () => new Promise<void>((resolve) => turns.push(resolve)),
  });
  const log: string[] = [];
  const job = (name: string, size: number) =>
    queue.enqueue({
      size,
      run: (from, to) => void log.push(`${name}[${from},${to})`),
      finish: () => void log.push(`${name} done`),
    });
  const turn = async () => {
    turns.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { queue, log, job, turn, turns };
}

test("a job no larger than a slice on an empty queue runs at once, synchronously", async () => {
  const { log, job, turns } = manual(3);
  const done = job("a", 3);
  expect(log).toEqual(["a[0,3)", "a done"]);
  expect(turns).toHaveLength(0);
  await done;
});

test("a larger job runs one slice per turn of the loop, and the jobs behind it wait their turn", async () => {
  const { log, job, turn, queue } = manual(2);
  let bigDone = false;
  void job("big", 5).then(() => (bigDone = true));
  void job("small", 1);
  expect(log).toEqual(["big[0,2)"]);
  expect(queue.backlog).toBe(4);
  await turn();
  expect(log).toEqual(["big[0,2)", "big[2,4)"]);
  await turn();
  expect(log.slice(2)).toEqual(["big[4,5)", "big done"]);
  expect(bigDone).toBe(true);
  await turn();
  expect(log.slice(4)).toEqual(["small[0,1)", "small done"]);
  expect(queue.backlog).toBe(0);
});

test("flush runs everything queued now, in order, each range once", async () => {
  const { log, job, turn, queue } = manual(2);
  const first = job("a", 3);
  const second = job("b", 0);
  queue.flush();
  expect(log).toEqual(["a[0,2)", "a[2,3)", "a done", "b done"]);
  await Promise.all([first, second]);
  await turn(); // the drain loop wakes to an empty queue and runs nothing twice
  expect(log).toHaveLength(4);
});

test("a job that throws rejects its own promise; the next job still runs", async () => {
  const queue = new SlicedQueue({ sliceSize: 10 });
  const failed = queue.enqueue({
    size: 1,
    run: () => {
      throw new Error("boom");
    },
  });
  let ran = false;
  await expect(failed).rejects.toThrow("boom");
  await queue.enqueue({ size: 1, run: () => void (ran = true) });
  expect(ran).toBe(true);
});
