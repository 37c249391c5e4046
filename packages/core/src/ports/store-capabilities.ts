/** Optional features of a store. */
export interface StoreCapabilities {
  /** `processes.save` is atomic with its events (a real transaction). */
  readonly transactions: boolean;
  /** `history` is present: per-interval aggregates, values at times and downsampled trends. */
  readonly aggregates: boolean;
}
