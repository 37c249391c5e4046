import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A virtual serial line: two linked ptys made by socat. */
export interface SerialPair {
  readonly master: string;
  readonly device: string;
  close(): Promise<void>;
}

/** Starts socat with a linked pty pair; resolves when both ends exist. */
export async function openSerialPair(): Promise<SerialPair> {
  const dir = mkdtempSync(join(tmpdir(), "kiln-rtu-"));
  const master = join(dir, "master");
  const device = join(dir, "device");
  const socat: ChildProcess = spawn("socat", [`pty,raw,echo=0,link=${master}`, `pty,raw,echo=0,link=${device}`], {
    stdio: "ignore",
  });
  for (let waited = 0; !(existsSync(master) && existsSync(device)); waited += 20) {
    if (waited > 5_000 || socat.exitCode !== null) throw new Error("socat did not create the pty pair");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    master,
    device,
    close: async () => {
      if (socat.exitCode === null) {
        const exited = new Promise((resolve) => socat.once("exit", resolve));
        socat.kill();
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
