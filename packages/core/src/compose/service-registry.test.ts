import { describe, expect, test } from "vitest";
import { ServiceContainer, type ServiceToken } from "./service-registry";

const token = <T>(name: string) => Symbol(name) as ServiceToken<T>;

describe("ServiceContainer", () => {
  test("builds each part once, on first resolve, with what it resolves", () => {
    const container = new ServiceContainer();
    const base = token<number>("base");
    const doubled = token<{ value: number }>("doubled");
    let builds = 0;
    container.register(base, () => 21);
    container.register(doubled, (resolve) => {
      builds++;
      return { value: resolve(base) * 2 };
    });
    expect(builds).toBe(0);
    const first = container.resolve(doubled);
    expect(first).toEqual({ value: 42 });
    expect(container.resolve(doubled)).toBe(first);
    expect(builds).toBe(1);
  });

  test("the last registration wins, so a host override replaces a default", () => {
    const container = new ServiceContainer();
    const clock = token<string>("clock");
    container.register(clock, () => "default");
    container.register(clock, () => "host");
    expect(container.resolve(clock)).toBe("host");
  });

  test("a part already built cannot be replaced", () => {
    const container = new ServiceContainer();
    const part = token<string>("part");
    container.register(part, () => "built");
    container.resolve(part);
    expect(() => container.register(part, () => "late")).toThrow(/already built/);
    expect(container.resolve(part)).toBe("built");
  });

  test("a missing registration and a cycle are named", () => {
    const container = new ServiceContainer();
    const a = token<unknown>("a");
    const b = token<unknown>("b");
    expect(() => container.resolve(a)).toThrow("no registration for Symbol(a)");
    container.register(a, (resolve) => resolve(b));
    container.register(b, (resolve) => resolve(a));
    expect(() => container.resolve(a)).toThrow("cycle of registrations: Symbol(a) -> Symbol(b) -> Symbol(a)");
  });

  test("two containers share nothing", () => {
    const part = token<object>("part");
    const first = new ServiceContainer();
    const second = new ServiceContainer();
    first.register(part, () => ({}));
    second.register(part, () => ({}));
    expect(first.resolve(part)).not.toBe(second.resolve(part));
  });
});
