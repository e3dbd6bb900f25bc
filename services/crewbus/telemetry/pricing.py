"""USD cost of an LLM call from provider-reported usage and a price table.

The table uses the keys of LiteLLM's model_prices_and_context_window.json, so an entry
(or the whole file) can be copied from there. Defaults ship in `prices.json`; the file
named by `CREWBUS_PRICES_FILE` is merged over them, entry by entry. A model not in the
table is unpriced (`None`): its calls are counted, never given a guessed price.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from crewbus.settings import MetricsSettings, load

PRICES_FILE_ENV = "CREWBUS_PRICES_FILE"
"""Read through `crewbus.settings.MetricsSettings.prices_file`."""


class PricingError(ValueError):
    """The price file is unreadable or an entry has the wrong shape."""


class ModelPrice(msgspec.Struct, frozen=True):
    """USD per token; unknown LiteLLM keys (max_tokens, mode, ...) are ignored."""

    input_cost_per_token: float
    output_cost_per_token: float
    cache_read_input_token_cost: float | None = None


PriceTable = dict[str, ModelPrice]


def default_prices() -> PriceTable:
    text = resources.files("crewbus.telemetry").joinpath("prices.json").read_text()
    return _parse(json.loads(text), "crewbus/telemetry/prices.json")


def load_prices(override: Path | None = None) -> PriceTable:
    """Defaults with `override` (a LiteLLM-format JSON file) merged over them."""
    table = default_prices()
    if override is not None:
        try:
            raw = json.loads(Path(override).read_text())
        except (OSError, ValueError) as exc:
            raise PricingError(f"cannot read price file {override}: {exc}") from exc
        table.update(_parse(raw, str(override)))
    return table


def _parse(raw: Any, source: str) -> PriceTable:
    if not isinstance(raw, dict):
        raise PricingError(f"{source}: expected an object of model name -> prices")
    table: PriceTable = {}
    for model, entry in raw.items():
        if model == "sample_spec":  # LiteLLM's documentation entry, not a model
            continue
        try:
            table[model] = msgspec.convert(entry, ModelPrice)
        except msgspec.ValidationError as exc:
            raise PricingError(f"{source}: model {model!r}: {exc}") from exc
    return table


@functools.cache
def active_prices() -> PriceTable:
    """The table this process prices with (read once; `active_prices.cache_clear()` re-reads)."""
    path = load(MetricsSettings).prices_file
    return load_prices(Path(path) if path else None)


def lookup(model: str, table: PriceTable | None = None) -> ModelPrice | None:
    """Exact name, else the name after a gateway prefix ('openai/gpt-4o' -> 'gpt-4o')."""
    prices = active_prices() if table is None else table
    if model in prices:
        return prices[model]
    _, sep, bare = model.partition("/")
    return prices.get(bare) if sep else None


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    table: PriceTable | None = None,
) -> float | None:
    """USD for one call; None when the model has no price.

    `input_tokens` includes `cached_input_tokens` (the OpenAI usage convention); cached
    tokens cost the cache-read price when the table has one, else the input price.
    """
    price = lookup(model, table)
    if price is None:
        return None
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cache_price = price.cache_read_input_token_cost
    if cache_price is None:
        cache_price = price.input_cost_per_token
    return (
        (input_tokens - cached) * price.input_cost_per_token
        + cached * cache_price
        + output_tokens * price.output_cost_per_token
    )
