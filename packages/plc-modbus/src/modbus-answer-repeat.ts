/**
 * The one rule for an answer that repeats the previous answer on the line (adv12 fix12e H2, H3; ADR 0041,
 * amendment fix12e): a repeater, radio modem or transparent gateway may send the previous answer again where the
 * current request's answer belongs, and the device's real answer comes after it in the device's own time. By its
 * bytes such a repeat cannot be told from a real answer whose values happen to be the same, and no wait can prove it
 * (the device's time is not known). So an answer byte-identical (unit and PDU) to the previous answer seen on the
 * line, which answered another request, is never taken as good unless it is also the last answer proven for this
 * very request (its value did not change): it is delivered `uncertain`, with the reason. It becomes this request's
 * proven answer when nothing out of order (a stray or refused frame) came on the line before this request is sent
 * again: a real answer behind a repeat would have.
 */
export class ModbusAnswerRepeats {
  /** The previous answer seen on the line and the request it answered (undefined: no request waited for it). */
  #last: { readonly key: string | undefined; readonly answer: Buffer } | undefined;
  /** Per request: its last answer taken good or proven. */
  readonly #proven = new Map<string, Buffer>();
  /** Per request: an answer delivered uncertain, proven if no disorder came before the request's next send. */
  readonly #candidates = new Map<string, { readonly answer: Buffer; readonly disorder: number }>();
  #disorder = 0;

  /** How many requests' answers are remembered (the oldest are forgotten first). */
  static readonly MEMORY = 1024;

  /** The identity of a request: its unit and PDU. */
  static keyOf(unitId: number, pdu: Buffer): string {
    return `${unitId}:${pdu.toString("hex")}`;
  }

  /** The request `key` goes on the line: an uncertain answer of its last send is proven if nothing came out of order. */
  sending(key: string): void {
    const candidate = this.#candidates.get(key);
    if (candidate === undefined) return;
    this.#candidates.delete(key);
    if (candidate.disorder === this.#disorder) this.#remember(this.#proven, key, candidate.answer);
  }

  /**
   * Why `answer` (unit id and PDU) to the request `key` is not trusted as good, or `undefined`; records it as the
   * previous answer on the line either way (see {@link ModbusAnswerRepeats}).
   */
  judge(key: string, answer: Buffer): string | undefined {
    const last = this.#last;
    const copy = Buffer.from(answer);
    this.#last = { key, answer: copy };
    const suspect =
      last !== undefined && last.key !== key && last.answer.equals(answer) && !this.#proven.get(key)?.equals(answer);
    if (!suspect) {
      this.#remember(this.#proven, key, copy);
      this.#candidates.delete(key);
      return undefined;
    }
    this.#remember(this.#candidates, key, { answer: copy, disorder: this.#disorder });
    return `the answer is byte-identical to the previous answer on the line, which ${last.key === undefined ? "no request waited for" : "answered another request"}: a repeater or gateway repeating it cannot be told apart by its bytes (uncertain until a read of it shows no answer came behind it)`;
  }

  /** A frame no request took came on the line (a stray, a refused or misaligned answer): a repeat's real answer may have. */
  disorder(answer?: Buffer): void {
    this.#disorder++;
    if (answer !== undefined) this.#last = { key: undefined, answer: Buffer.from(answer) };
  }

  #remember<TValue>(map: Map<string, TValue>, key: string, value: TValue): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > ModbusAnswerRepeats.MEMORY) map.delete(map.keys().next().value!);
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
