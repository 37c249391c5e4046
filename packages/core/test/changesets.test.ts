import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import getReleasePlan from "@changesets/get-release-plan";
import { afterAll, beforeAll, expect, test } from "vitest";

const repository = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const adapters = ["@kiln/plc-opcua", "@kiln/plc-modbus", "@kiln/store-postgres"];
let workspace: string;

// changesets' own release planner, on a copy of this workspace's manifests and config.
beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), "kiln-changesets-"));
  const root = JSON.parse(await readFile(join(repository, "package.json"), "utf8")) as { workspaces: string[] };
  await writeFile(
    join(workspace, "package.json"),
    JSON.stringify({ ...root, workspaces: root.workspaces.filter((w) => !w.includes("*")) }),
  );
  for (const folder of root.workspaces.filter((w) => !w.includes("*"))) {
    await mkdir(join(workspace, folder), { recursive: true });
    await cp(join(repository, folder, "package.json"), join(workspace, folder, "package.json"));
  }
  await mkdir(join(workspace, ".changeset"));
  await cp(join(repository, ".changeset", "config.json"), join(workspace, ".changeset", "config.json"));
});

afterAll(async () => {
  await rm(workspace, { recursive: true, force: true });
});

async function planFor(bump: "patch" | "minor"): Promise<Map<string, string>> {
  await writeFile(
    join(workspace, ".changeset", "core-change.md"),
    `---\n"@kiln/core": ${bump}\n---\n\nA core change.\n`,
  );
  const plan = await getReleasePlan(workspace);
  return new Map(plan.releases.map((release) => [release.name, release.type]));
}

test.each(["patch", "minor"] as const)(
  "a core %s does not major-bump the adapters that peer-depend on it",
  async (bump) => {
    const releases = await planFor(bump);
    expect(releases.get("@kiln/core")).toBe(bump);
    for (const adapter of adapters) expect(releases.get(adapter) ?? "none").not.toBe("major");
  },
);
