/**
 * Code samples of the documentation: the ```ts (or ```typescript) blocks of a Markdown file
 * (docs-check/extract.ts type-checks them) and the `@example` blocks of a TSDoc comment (the API
 * reference). test/doc-samples runs some of each.
 */

/** Opening fence of a TypeScript block: ``` or ~~~ followed by ts/typescript and optional words. */
const OPENING = /^(\s*)(`{3,}|~{3,})\s*(ts|typescript)(?:\s+(.*))?$/i;

/** One extracted block. */
export interface Block {
  /** Markdown file, relative to the root, with `/` separators. */
  readonly file: string;
  /** 1-based line of the block's first code line. */
  readonly line: number;
  readonly code: string;
}

/** The TypeScript blocks of one Markdown file, except those marked `ignore`. */
export function extractBlocks(file: string, markdown: string): Block[] {
  const lines = markdown.split(/\r?\n/);
  const blocks: Block[] = [];
  let fence: { marker: string; indent: number; start: number; ignored: boolean } | undefined;
  let body: string[] = [];
  let other: string | undefined;
  lines.forEach((text, index) => {
    if (fence === undefined && other === undefined) {
      const opening = OPENING.exec(text);
      if (opening) {
        const words = (opening[4] ?? "").split(/\s+/);
        fence = {
          marker: opening[2]!,
          indent: opening[1]!.length,
          start: index + 2,
          ignored: words.includes("ignore"),
        };
        body = [];
        return;
      }
      const otherFence = /^\s*(`{3,}|~{3,})/.exec(text);
      if (otherFence) other = otherFence[1]!;
      return;
    }
    if (other !== undefined) {
      if (text.trim().startsWith(other) && text.trim().replace(/[`~]/g, "") === "") other = undefined;
      return;
    }
    if (fence !== undefined) {
      const trimmed = text.trim();
      if (trimmed.startsWith(fence.marker) && trimmed.replace(/[`~]/g, "") === "") {
        if (!fence.ignored) blocks.push({ file, line: fence.start, code: body.join("\n") });
        fence = undefined;
        return;
      }
      body.push(fence.indent > 0 ? text.replace(new RegExp(`^ {0,${fence.indent}}`), "") : text);
    }
  });
  return blocks;
}

/**
 * The `@example` code of the TSDoc comment right before `declaration` (e.g. `export function
 * createControlSystem(`) in a TypeScript source, with the comment's ` * ` prefixes removed; one
 * string per `@example`, ending at the next tag or the end of the comment.
 * @throws Error when the declaration or its comment is not found.
 */
export function tsdocExamples(source: string, declaration: string): string[] {
  const at = source.indexOf(declaration);
  const end = source.lastIndexOf("*/", at);
  const start = source.lastIndexOf("/**", end);
  if (at < 0 || end < 0 || start < 0 || source.slice(end + 2, at).trim() !== "") {
    throw new Error(`No TSDoc comment right before "${declaration}".`);
  }
  const lines = source
    .slice(start + 3, end)
    .split(/\r?\n/)
    .map((line) => line.replace(/^\s*\* ?/, ""));
  const examples: string[] = [];
  let current: string[] | undefined;
  for (const line of lines) {
    if (line.startsWith("@")) {
      if (current) examples.push(current.join("\n").trim());
      current = line.startsWith("@example") ? [] : undefined;
    } else current?.push(line);
  }
  if (current) examples.push(current.join("\n").trim());
  return examples;
}
