declare const serviceType: unique symbol;

/**
 * The key of one part of a control system (see `Tokens`): a unique symbol that also carries, for
 * the type checker only, the type of what it resolves to.
 */
export type ServiceToken<T> = symbol & { readonly [serviceType]?: T };

/** Resolves a registration inside a factory. */
export type Resolve = <T>(token: ServiceToken<T>) => T;

/**
 * What a host sees of a control system's container: it can replace any registration before
 * the system is built. Factories are called once, lazily, and may resolve other tokens.
 *
 * @example
 * createControlSystem({ machineId: "ald-1", tags, register: (registry) => {
 *   registry.override(Tokens.Clock, () => new SimulatedClock());
 * } });
 */
export interface ServiceRegistry {
  /** Replaces the registration of `token` with `factory`. */
  override<T>(token: ServiceToken<T>, factory: (resolve: Resolve) => T): void;
}

/**
 * @internal The parts of one control system: a factory per token, each called at most once, on
 * first resolve; the last registration of a token wins. Nothing is global: every system has its
 * own (docs/adr/0017-composition-without-a-container-library.md).
 */
export class ServiceContainer {
  readonly #factories = new Map<symbol, (resolve: Resolve) => unknown>();
  readonly #instances = new Map<symbol, unknown>();
  readonly #resolving: symbol[] = [];

  /**
   * Registers `factory` for `token`, replacing an earlier registration.
   * @throws `Error` once `token` has been resolved (a part already built cannot be replaced).
   */
  register<T>(token: ServiceToken<T>, factory: (resolve: Resolve) => T): void {
    if (this.#instances.has(token)) throw new Error(`${String(token)} is already built; register it before use`);
    this.#factories.set(token, factory);
  }

  /**
   * The part registered under `token`, built on first use.
   * @throws `Error` for a token without registration or a cycle of factories (programming errors).
   */
  resolve<T>(token: ServiceToken<T>): T {
    if (this.#instances.has(token)) return this.#instances.get(token) as T;
    const factory = this.#factories.get(token);
    if (factory === undefined) throw new Error(`no registration for ${String(token)}`);
    if (this.#resolving.includes(token)) {
      throw new Error(`cycle of registrations: ${[...this.#resolving, token].map(String).join(" -> ")}`);
    }
    this.#resolving.push(token);
    try {
      const instance = factory((inner) => this.resolve(inner)) as T;
      this.#instances.set(token, instance);
      return instance;
    } finally {
      this.#resolving.pop();
    }
  }
}
