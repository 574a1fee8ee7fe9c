"""The budget rule and the cost estimate: UTC periods and resets, once-only thresholds, prices by prefix."""

from __future__ import annotations

import calendar

import pytest

from core.admin import CommandError, _tokens
from core.config import DEFAULT_PRICES, ModelPrice
from core.messages import Usage
from core.stores.usage import WARN_AT, crossed, exhausted, periods, resets_at
from core.usage_report import cost_of, price_of, when

NEW_YEARS_EVE = calendar.timegm((2026, 12, 31, 23, 59, 30))


def test_periods_and_resets_are_utc_and_roll_over_the_year() -> None:
    assert periods(NEW_YEARS_EVE) == ("2026-12", "2026-12-31")
    assert resets_at("day", NEW_YEARS_EVE) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert resets_at("month", NEW_YEARS_EVE) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert resets_at("month", calendar.timegm((2026, 2, 3, 4, 5, 6))) == calendar.timegm((2026, 3, 1, 0, 0, 0))
    assert when(resets_at("month", NEW_YEARS_EVE)) == "00:00 UTC on 1 January 2027"


def test_thresholds_are_announced_once_and_the_whole_budget_refuses() -> None:
    assert crossed(79, 100, 0) == [] and crossed(80, 100, 0) == [WARN_AT]
    assert crossed(95, 100, WARN_AT) == []  # already announced
    assert crossed(120, 100, 0) == [WARN_AT, 1.0] and crossed(120, 100, 1.0) == []
    assert crossed(10**9, None, 0) == []  # no budget
    assert not exhausted(99, 100) and exhausted(100, 100) and not exhausted(10**9, None)


def test_prices_by_the_longest_prefix_and_the_cost_of_each_kind_of_token() -> None:
    assert price_of("claude-haiku-4-5", DEFAULT_PRICES) == DEFAULT_PRICES["claude-haiku-4-5"]
    assert price_of("claude-haiku-3-5", DEFAULT_PRICES) == DEFAULT_PRICES["claude-haiku"]
    assert price_of("gpt-x", DEFAULT_PRICES) is None
    price = ModelPrice(input=3, output=15, cache_read=0.3, cache_write=3.75)
    assert cost_of(Usage(1_000_000, 0), price) == pytest.approx(3.0)
    assert cost_of(Usage(0, 200_000, 1_000_000, 400_000), price) == pytest.approx(3.0 + 0.3 + 1.5)


def test_token_counts_as_admins_write_them() -> None:
    assert _tokens("2000000") == _tokens("2,000,000") == _tokens("2m") == 2_000_000
    assert _tokens("500k") == 500_000 and _tokens("1.5m") == 1_500_000 and _tokens("none") is None
    for bad in ("lots", "-5", "1e9", "inf"):
        with pytest.raises(CommandError):
            _tokens(bad)
