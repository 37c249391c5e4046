import type { Sample } from "../domain/sample";

/**
 * Added to the quality reason of a sample Kiln stamped with its receive time because its source
 * timestamp did not advance past the tag's last one.
 */
export const RESTAMPED_REASON = "source timestamp did not advance; stamped with receive time";

/** How far (ms) a receipt stamp may run ahead of the receive time to stay strictly increasing. */
export const RECEIPT_STAMP_LEAD_MAX_MS = 1;

/**
 * The timestamp Kiln gives a sample received at `receivedAt` (wall time, ms) that must follow a
 * tag's last timestamp `after`: the receive time when it is later, else `after` plus one
 * microsecond (the stores' resolution), so many changes within one millisecond stay distinct and
 * in order without running ahead of real time. When that would run more than
 * {@link RECEIPT_STAMP_LEAD_MAX_MS} ahead of the receive time (the host's wall clock stepped back,
 * or earlier source timestamps lay in the future), the receive time itself: the tag's history then
 * goes back with the wall clock instead of piling up just after `after`.
 */
export function receiptStamp(after: number, receivedAt: number): number {
  if (receivedAt > after) return receivedAt;
  const next = (Math.round(after * 1_000) + 1) / 1_000;
  return next <= receivedAt + RECEIPT_STAMP_LEAD_MAX_MS ? next : receivedAt;
}

/** `sample` stamped with {@link receiptStamp}, its quality reason ending with {@link RESTAMPED_REASON} (severity and code kept). */
export function restamped(sample: Sample, after: number, receivedAt: number): Sample {
  const given = sample.quality.reason;
  const reason =
    given === undefined || given === ""
      ? RESTAMPED_REASON
      : given.endsWith(RESTAMPED_REASON)
        ? given
        : `${given}; ${RESTAMPED_REASON}`;
  return { ...sample, timestamp: receiptStamp(after, receivedAt), quality: { ...sample.quality, reason } };
}

/** True when the table stamped `sample` with its receive time ({@link restamped}): its source timestamp did not advance (fix15v). */
export function isRestamped(sample: Sample): boolean {
  return sample.quality.reason?.endsWith(RESTAMPED_REASON) === true;
}
