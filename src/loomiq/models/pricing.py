"""What a model call costs: the agent's own per-token prices, else the `genai-prices` table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from ._types import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per token for input and output. `None` prices mean: look the model up in genai-prices."""

    input_per_token: float | None = None
    output_per_token: float | None = None
    model: str = ""
    provider: str | None = None

    def cost(self, usage: Usage) -> float:
        """The price of `usage`; 0.0 when the model is unknown to the table and no price was given."""
        if self.input_per_token is not None or self.output_per_token is not None:
            return usage.input_tokens * (self.input_per_token or 0.0) + usage.output_tokens * (
                self.output_per_token or 0.0
            )
        if not self.model or (usage.input_tokens == 0 and usage.output_tokens == 0):
            return 0.0
        rates = _table_rates(self.model, self.provider)
        if rates is None:
            return 0.0
        return usage.input_tokens * rates[0] + usage.output_tokens * rates[1]


FREE = Pricing(0.0, 0.0)


@lru_cache(maxsize=256)
def _table_rates(model: str, provider: str | None) -> tuple[float, float] | None:
    """Per-token (input, output) rates from genai-prices, or None if the model is not listed.

    The table is bundled with the package (no network). Rates are derived once per model from a
    one-million-token probe, so the per-call cost is two multiplications.
    """
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    try:
        mtok = 1_000_000
        inp = calc_price(PriceUsage(input_tokens=mtok, output_tokens=0), model_ref=model, provider_id=provider)
        out = calc_price(PriceUsage(input_tokens=0, output_tokens=mtok), model_ref=model, provider_id=provider)
    except LookupError:
        log.info("no price known for model %r (provider %r); cost counted as 0", model, provider)
        return None
    return float(inp.total_price) / mtok, float(out.total_price) / mtok
