import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

// The CommonJS service (src/service.cjs) run as a process manager runs it: started, sent a
// signal once it is ready, expected to stop the control system (drain, close) and exit 0.
const quickstart = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the service, sends `signal` when it says it is ready, and resolves when it exits. */
function runAndSignal(signal: NodeJS.Signals): Promise<Exit> {
  const child = spawn(process.execPath, ["--conditions=@kiln/source", "--import", "tsx", "src/service.cjs"], {
    cwd: quickstart,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let sent = false;
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    if (!sent && stdout.includes("service ready")) {
      sent = true;
      child.kill(signal);
    }
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const deadline = setTimeout(() => child.kill("SIGKILL"), 8_000);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code, exitSignal) => {
      clearTimeout(deadline);
      resolve({ code, signal: exitSignal, stdout, stderr });
    });
  });
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(
    `on ${signal} the CommonJS service stops the system, drains every sample and exits 0`,
    { timeout: 10_000 },
    async () => {
      const exit = await runAndSignal(signal);
      expect(exit.stderr).toBe("");
      expect(exit).toMatchObject({ code: 0, signal: null });
      const lines = exit.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^pressure \d\.\d{3} mbar \(good\)$/); // ready() gave a real value
      expect(lines).toContain(`${signal}: stopping`);
      const stopped = /^stopped: logged (\d+) of (\d+) samples, 0 dropped$/.exec(lines.at(-1) ?? "");
      expect(stopped).not.toBeNull();
      expect(Number(stopped![1])).toBeGreaterThan(0);
      expect(stopped![1]).toBe(stopped![2]);
    },
  );
}
