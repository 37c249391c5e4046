/**
 * The poison rule's evidence (ADR 0013, sixth review and amendment fix15ad): when may an audit
 * entry that keeps failing with an error the store did not classify be set aside as the cause?
 *
 * Failures the store does not classify may be about the entry (a poison entry) or about the store
 * (a flaky store that fails some calls whatever their content). The head entry is judged against
 * the store's own record on the other entries over the last {@link WINDOW} store calls: `q`, an
 * upper estimate of the store's rate of unclassified failures on other entries. An innocent head
 * fails `F` times in a row by chance with probability about `q^F`, so the head is set aside only
 * when that is at most {@link CHANCE}, and never before {@link MIN_FAILURES} failures (the last one
 * after the store answered about another entry, a take or a for-good refusal: the caller's
 * evidence, fix15ae). A store that has failed no other
 * entry in the window sets aside after {@link MIN_FAILURES} failures, as before; one that fails
 * 30 % of calls needs about 20 in a row. Known limit: a store that has failed no other entry in the
 * window yet (its first failures) is taken as reliable, so a flaky store's very first failing
 * entry can still be set aside (about p^3 for a failure rate p: 3 % at 30 %). The entry the head refers to (a refusal's intent) is not
 * an other entry: it carries the same content. Internal to the audit writer.
 */

/** Store calls kept to estimate the store's failure rate on other entries. */
const WINDOW = 128;

/** The chance of an innocent entry failing that many times in a row below which it is set aside. */
const CHANCE = 1e-6;

/** Failures of the head (unclassified, in a row) before it may be set aside at all. */
export const MIN_FAILURES = 3;

/** Records the audit store's answers and judges whether a head entry is proven the cause. */
export class PoisonEvidence {
  /** The last {@link WINDOW} outcomes: the entry's id and whether the store took it. */
  readonly #outcomes: { readonly id: string; readonly ok: boolean }[] = [];

  /** The store took the entry `id`. */
  took(id: string): void {
    this.#push(id, true);
  }

  /**
   * The store refused the entry `id` for good (a definite answer about its content): it answered,
   * so for the rate it counts as a take; without it a poison head with only refused entries
   * behind it was never proven the cause (fix15ae, adv15 HIGH-1).
   */
  answered(id: string): void {
    this.#push(id, true);
  }

  /** The store failed the entry `id` with an error it did not classify. */
  failed(id: string): void {
    this.#push(id, false);
  }

  /**
   * Whether the head entry `id`, which failed `failures` times in a row with an unclassified
   * error (the last after the store answered about another entry: took it, or refused it for
   * good), is proven to be the cause: `q^failures`
   * is at most {@link CHANCE}, `q` the upper estimate of the store's rate of unclassified
   * failures on entries other than `id` and `related` (the entry it refers to, if any) and other
   * than `suspects`: entries under suspicion themselves (a suspect, a probe the store failed, not
   * answered since), whose failures are about their content as much as the store's (fix15ah,
   * adv15c HIGH-1: twenty of one principal's entries made the store look as if it failed everything).
   */
  provenCause(id: string, failures: number, related?: string, suspects?: ReadonlySet<string>): boolean {
    if (failures < MIN_FAILURES) return false;
    let others = 0;
    let otherFailures = 0;
    for (const outcome of this.#outcomes) {
      if (outcome.id === id || outcome.id === related) continue;
      // Entries under suspicion themselves: their failures are not the store's rate on others.
      if (suspects?.has(outcome.id) === true) continue;
      others++;
      if (!outcome.ok) otherFailures++;
    }
    if (others === 0) return false;
    if (otherFailures === 0) return true;
    // About one standard deviation above the count: a short window must not make a flaky store
    // look reliable.
    const rate = Math.min(1, (otherFailures + Math.sqrt(otherFailures) + 1) / others);
    return rate ** failures <= CHANCE;
  }

  /**
   * The entry `id` was set aside (proven the cause): its failures were about its content, so they
   * leave the estimate of the store's rate on other entries (fix15ah, adv15c HIGH-1: each entry
   * set aside made the next one of the same principal harder to prove).
   */
  setAside(id: string): void {
    for (let index = this.#outcomes.length - 1; index >= 0; index--)
      if (this.#outcomes[index]!.id === id) this.#outcomes.splice(index, 1);
  }

  #push(id: string, ok: boolean): void {
    this.#outcomes.push({ id, ok });
    if (this.#outcomes.length > WINDOW) this.#outcomes.shift();
  }
}
