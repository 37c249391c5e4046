import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A tmpfs of `size` (mount's syntax: `"200k"`) mounted on a new folder, for tests of a full disk;
 * or undefined, with the reason and how to enable it printed, when mounting is not allowed.
 */
export async function tmpfs(size: string): Promise<string | undefined> {
  const mount = await mkdtemp(join(tmpdir(), "kiln-tmpfs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mount], { stdio: "ignore" });
    return mount;
  } catch {
    console.log(`skipped: mounting a ${size} tmpfs failed (run the tests as root, with mount allowed, to enable)`);
    await rm(mount, { recursive: true, force: true });
    return undefined;
  }
}

/** Unmounts a {@link tmpfs} and removes its folder. */
export async function unmount(mount: string): Promise<void> {
  execFileSync("umount", ["-l", mount], { stdio: "ignore" });
  await rm(mount, { recursive: true, force: true });
}
