"""`Pricing`: explicit per-token prices, and the bundled genai-prices table (no network)."""

from __future__ import annotations

import pytest

from loomiq.models import Pricing, Usage


def test_explicit_prices() -> None:
    pricing = Pricing(input_per_token=0.001, output_per_token=0.002)
    assert pricing.cost(Usage(100, 50)) == pytest.approx(0.2)
    assert pricing.cost(Usage()) == 0.0


def test_one_explicit_price_leaves_the_other_free() -> None:
    assert Pricing(input_per_token=0.5).cost(Usage(2, 1000)) == pytest.approx(1.0)
    assert Pricing(output_per_token=0.5).cost(Usage(1000, 2)) == pytest.approx(1.0)


def test_explicit_prices_win_over_the_table() -> None:
    pricing = Pricing(input_per_token=0.0, output_per_token=0.0, model="gpt-4o-mini", provider="openai")
    assert pricing.cost(Usage(1_000_000, 1_000_000)) == 0.0


def test_table_price_for_a_known_model() -> None:
    pricing = Pricing(model="gpt-4o-mini", provider="openai")
    small = pricing.cost(Usage(1_000, 500))
    assert small > 0.0
    # Rates are per token: twice the tokens, twice the price.
    assert pricing.cost(Usage(2_000, 1_000)) == pytest.approx(2 * small)
    # Output tokens cost more than input tokens for this model.
    assert pricing.cost(Usage(0, 1_000)) > pricing.cost(Usage(1_000, 0)) > 0.0


def test_table_price_for_an_anthropic_model() -> None:
    assert Pricing(model="claude-3-5-haiku-latest", provider="anthropic").cost(Usage(1_000, 1_000)) > 0.0


@pytest.mark.parametrize("provider", ["openai", None])
def test_unknown_model_costs_nothing(provider: str | None) -> None:
    assert Pricing(model="no-such-model-anywhere-42", provider=provider).cost(Usage(1_000, 1_000)) == 0.0


def test_no_model_and_no_prices_costs_nothing() -> None:
    assert Pricing().cost(Usage(1_000, 1_000)) == 0.0


def test_zero_usage_costs_nothing() -> None:
    assert Pricing(model="gpt-4o-mini", provider="openai").cost(Usage()) == 0.0
