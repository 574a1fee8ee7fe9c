import { describe, expect, test } from "vitest";
import { crossed, exhausted, periods, resetsAt } from "../functions/lib/usage";

// The same cases as tests/unit/test_usage_rules.py: one rule, two languages.
const NEW_YEARS_EVE = Date.UTC(2026, 11, 31, 23, 59, 30) / 1000;

describe("the budget rule", () => {
  test("periods and resets are UTC and roll over the year", () => {
    expect(periods(NEW_YEARS_EVE)).toEqual(["2026-12", "2026-12-31"]);
    expect(resetsAt("day", NEW_YEARS_EVE)).toBe(Date.UTC(2027, 0, 1) / 1000);
    expect(resetsAt("month", NEW_YEARS_EVE)).toBe(Date.UTC(2027, 0, 1) / 1000);
    expect(resetsAt("month", Date.UTC(2026, 1, 3, 4, 5, 6) / 1000)).toBe(Date.UTC(2026, 2, 1) / 1000);
  });

  test("thresholds are announced once and the whole budget refuses", () => {
    expect(crossed(79, 100, 0)).toEqual([]);
    expect(crossed(80, 100, 0)).toEqual([0.8]);
    expect(crossed(95, 100, 0.8)).toEqual([]);
    expect(crossed(120, 100, 0)).toEqual([0.8, 1]);
    expect(crossed(120, 100, 1)).toEqual([]);
    expect(crossed(1e9, null, 0)).toEqual([]);
    expect([exhausted(99, 100), exhausted(100, 100), exhausted(1e9, null)]).toEqual([false, true, false]);
  });
});
