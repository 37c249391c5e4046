import type { DependencyContainer, InjectionToken } from "tsyringe";

/** Resolves a registration inside a factory. */
export type Resolve = <T>(token: InjectionToken<T>) => T;

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
  override<T>(token: InjectionToken<T>, factory: (resolve: Resolve) => T): void;
}

/** @internal Registers `factory` as a lazily created singleton of `container`. */
export function registerSingleton<T>(
  container: DependencyContainer,
  token: InjectionToken<T>,
  factory: (resolve: Resolve) => T,
): void {
  let created = false;
  let instance: T;
  container.register(token, {
    useFactory: (dependencies) => {
      if (!created) {
        instance = factory((inner) => dependencies.resolve(inner));
        created = true;
      }
      return instance;
    },
  });
}
