/**
 * A compiled target pattern of a role grant: `*` matches any run of characters (none included),
 * every other character matches itself. `"valve.*"`, `"reactor-1/*"`, `"*.setpoint"`.
 *
 * Matching never backtracks: the literal segments between stars are found left to right, each
 * at its first occurrence after the previous one (for `*`-only globs the leftmost match of each
 * segment is always a correct choice). The work is at most (text length + 1) × (pattern length + 1)
 * character comparisons, whatever the input, so a long or hostile target name cannot stall a check.
 */
export class TagPattern {
  /** The pattern as written. */
  readonly source: string;
  readonly #segments: readonly string[];

  constructor(source: string) {
    this.source = source;
    this.#segments = source.split("*");
  }

  /**
   * True when `text` matches the whole pattern.
   * @param counter when given, `counter.steps` is increased by the character comparisons made (for tests of the bound).
   */
  test(text: string, counter?: { steps: number }): boolean {
    const segments = this.#segments;
    const first = segments[0]!;
    if (segments.length === 1) {
      if (counter) counter.steps += Math.min(first.length, text.length) + 1;
      return text === first;
    }
    const last = segments[segments.length - 1]!;
    if (text.length < first.length + last.length) return false;
    if (!matchesAt(text, first, 0, counter) || !matchesAt(text, last, text.length - last.length, counter)) return false;
    let position = first.length;
    const end = text.length - last.length;
    for (let index = 1; index < segments.length - 1; index++) {
      const segment = segments[index]!;
      if (segment === "") continue;
      const found = indexFrom(text, segment, position, end, counter);
      if (found < 0) return false;
      position = found + segment.length;
    }
    return true;
  }
}

function matchesAt(text: string, segment: string, at: number, counter: { steps: number } | undefined): boolean {
  for (let offset = 0; offset < segment.length; offset++) {
    if (counter) counter.steps++;
    if (text.charCodeAt(at + offset) !== segment.charCodeAt(offset)) return false;
  }
  return true;
}

/** The first index >= `from` where `segment` lies wholly before `end`, or -1. */
function indexFrom(
  text: string,
  segment: string,
  from: number,
  end: number,
  counter: { steps: number } | undefined,
): number {
  for (let start = from; start + segment.length <= end; start++) {
    if (counter) counter.steps++;
    if (matchesAt(text, segment, start, counter)) return start;
  }
  return -1;
}
