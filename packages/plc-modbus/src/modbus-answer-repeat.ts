/**
 * The one rule for an answer that repeats the previous answer on the line (adv12 fix12e H2, H3; adv12b H3, H4; ADR
 * 0041, amendments fix12e and fix12f): a repeater, radio modem or transparent gateway may send the previous answer
 * again where the current request's answer belongs, and the device's real answer comes after it in the device's own
 * time. By its bytes such a repeat cannot be told from a real answer whose values happen to be the same, and no wait
 * and no silence can prove it (a lost real answer leaves no disorder, adv12b H4). So an answer byte-identical (unit and
 * PDU) to the previous answer seen on the line, which answered another request or none, is NEVER delivered good, whatever
 * it equals (the request's own last answer too, adv12b H3: the real, changed answer then came late into the next read of its shape): it is delivered
 * `uncertain`, with the reason, and the request queue holds its shape and fences the stream (a request of another
 * size goes first), so the request's next answer after the fence's own is its proof (a serial line answers in order).
 */
export class ModbusAnswerRepeats {
  /** The previous answer seen on the line and the request it answered (undefined: no request waited for it). */
  #last: { readonly key: string | undefined; readonly answer: Buffer } | undefined;

  /** The identity of a request: its unit and PDU. */
  static keyOf(unitId: number, pdu: Buffer): string {
    return `${unitId}:${pdu.toString("hex")}`;
  }

  /**
   * Why `answer` (unit id and PDU) to the request `key` is not trusted as good, or `undefined`; records it as the
   * previous answer on the line either way (see {@link ModbusAnswerRepeats}).
   */
  judge(key: string, answer: Buffer): string | undefined {
    const last = this.#last;
    this.#last = { key, answer: Buffer.from(answer) };
    // The same request sent again back to back (one block read every scan) is not judged: a repeat would be its own
    // previous answer, of the same registers (ADR 0041 amendment fix12f: left open, with the mitigation).
    if (last === undefined || last.key === key || !last.answer.equals(answer)) return undefined;
    const which = last.key === undefined ? "no request waited for" : "answered another request";
    return `the answer is byte-identical to the previous answer on the line, which ${which}: a repeater or gateway repeating it cannot be told apart by its bytes (uncertain; read again after a request of another size)`;
  }

  /** A frame no request took came on the line (a stray, a refused or misaligned answer): a repeat's real answer may have. */
  disorder(answer?: Buffer): void {
    if (answer !== undefined) this.#last = { key: undefined, answer: Buffer.from(answer) };
  }
}

/** Answers delivered `uncertain` by a client (see {@link ModbusAnswerRepeats}), with the reason: answer data → reason. */
const doubts = new WeakMap<object, string>();

/** Marks answer data (a Buffer from a client, or the decoded array) as uncertain for `reason`. */
export function doubtAnswer<TData extends object>(data: TData, reason: string): TData {
  doubts.set(data, reason);
  return data;
}

/** Why answer data is uncertain, if a client said so (see {@link doubtAnswer}). */
export function answerDoubt(data: object): string | undefined {
  return doubts.get(data);
}
