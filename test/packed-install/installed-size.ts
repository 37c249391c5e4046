import { existsSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";

interface Manifest {
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
  readonly peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/** Bytes of the files of one installed package, without the packages nested in its node_modules. */
async function ownBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules") continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await ownBytes(full);
    else if (entry.isFile()) total += (await stat(full)).size;
  }
  return total;
}

/** The directory Node's resolution finds `name` in, looking up from the package at `from`. */
function resolvePackage(name: string, from: string, root: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name);
    if (existsSync(path.join(candidate, "package.json"))) return candidate;
    if (dir === root || dir === path.dirname(dir)) return undefined;
  }
}

/**
 * What installing `name` alone costs on disk, in bytes: the package and everything it needs at
 * run time, transitively: its dependencies, its optional dependencies where npm installed them
 * (as it does by default), and its required peer dependencies (optional peers are left out, as npm
 * leaves them out), as installed under `app`.
 */
export async function installedSize(app: string, name: string): Promise<{ bytes: number; packages: number }> {
  const seen = new Set<string>();
  const pending = [resolvePackage(name, app, app)];
  let bytes = 0;
  while (pending.length > 0) {
    const dir = pending.pop();
    if (dir === undefined || seen.has(dir)) continue;
    seen.add(dir);
    bytes += await ownBytes(dir);
    const manifest = JSON.parse(await readFile(path.join(dir, "package.json"), "utf8")) as Manifest;
    const optional = manifest.peerDependenciesMeta ?? {};
    const needed = [
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.optionalDependencies ?? {}),
      ...Object.keys(manifest.peerDependencies ?? {}).filter((peer) => optional[peer]?.optional !== true),
    ];
    for (const dependency of needed) {
      const found = resolvePackage(dependency, dir, app);
      // An optional dependency npm did not install (one for another platform) costs nothing.
      if (found) pending.push(found);
    }
  }
  return { bytes, packages: seen.size };
}
