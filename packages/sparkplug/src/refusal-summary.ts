import type { KilnErrorCode } from "@kiln/core";

/** One command metric refused by the edge node itself, before it could become a Kiln command. */
export interface EarlyRefusal {
  /** The tag, else `alias:<n>`, else `(no name)`. */
  readonly target: string;
  /** The refusal's error code (`KILN_TAG_UNKNOWN`, `KILN_VALIDATION`, `KILN_NOT_CONNECTED`). */
  readonly code: KilnErrorCode;
  /** Why it was refused. */
  readonly message: string;
}

/** How many refused names an audit entry standing for several refusals lists. */
const SUMMARY_NAMES = 3;

/**
 * The audit entries for refusals of one command message made before any of them reached Kiln's
 * command path: one per error code, in the order the codes first occur. A code refused once keeps
 * its own target and message; refused `n > 1` times it becomes one entry whose target gives the
 * count and the first {@link SUMMARY_NAMES} targets and whose message gives the count and the
 * first refusal's message. So one message with 256 unknown aliases writes one entry, not 256, and
 * cannot evict the audit trail (issue 19, adversarial MEDIUM 2; ADR 0043 amendment).
 */
export function summarizeRefusals(
  command: "NCMD" | "DCMD",
  topic: string,
  refusals: readonly EarlyRefusal[],
): EarlyRefusal[] {
  const byCode = new Map<KilnErrorCode, EarlyRefusal[]>();
  for (const refusal of refusals) {
    const group = byCode.get(refusal.code);
    if (group === undefined) byCode.set(refusal.code, [refusal]);
    else group.push(refusal);
  }
  return [...byCode].map(([code, group]) => {
    if (group.length === 1) return group[0]!;
    const names = group.slice(0, SUMMARY_NAMES).map((refusal) => refusal.target);
    const more = group.length > SUMMARY_NAMES ? `, … ${String(group.length - SUMMARY_NAMES)} more` : "";
    return {
      target: `(${String(group.length)} metrics: ${names.join(", ")}${more})`,
      code,
      message: `${String(group.length)} metrics of one ${command} on ${topic} refused (${code}), none written; the first: ${group[0]!.message}`,
    };
  });
}
