/**
 * Child process for the journal SIGKILL test: appends sequence-numbered records and releases them
 * oldest first, every tenth release durable, topping the journal up as it goes. Lines on stdout
 * (a pipe: written synchronously on Linux, so a line printed is a line the parent gets):
 * `appended <seq>` after an append resolved (fsynced), `releasing <seq>` before a release is
 * asked for, `durable <seq>` after a durable release resolved. Runs until it is killed.
 */
import { RecordJournal } from "@kiln/core/driver-kit";

const path = process.argv[2];
if (!path) throw new Error("usage: journal-release-writer <journal path>");

const { journal } = await RecordJournal.open(path);
let next = 0;
for (;;) {
  while (journal.records < 200) {
    await journal.append(Buffer.from(`seq ${next}`.padEnd(64, ".")));
    process.stdout.write(`appended ${next++}\n`);
  }
  const record = await journal.peek();
  const seq = Number(/^seq (\d+)/.exec(record!.toString())![1]);
  const durable = seq % 10 === 9;
  process.stdout.write(`releasing ${seq}\n`);
  await journal.release({ durable });
  if (durable) process.stdout.write(`durable ${seq}\n`);
}
