"""The price table: LiteLLM key format, user overrides, no guessed prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crewbus.telemetry import pricing


def test_default_table_prices_common_models_and_the_simulated_one_at_zero() -> None:
    table = pricing.default_prices()
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini"):
        assert table[model].input_cost_per_token > 0
    assert pricing.cost_usd("crewbus-simulated", 1000, 1000, table=table) == 0.0


def test_cost_uses_input_output_and_cached_prices() -> None:
    table = pricing.default_prices()
    # gpt-4o: 2.5 $/M in, 10 $/M out, 1.25 $/M cached.
    cost = pricing.cost_usd("gpt-4o", 1_000_000, 1_000_000, cached_input_tokens=400_000,
                            table=table)
    assert cost == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 10.0)


def test_unknown_model_is_unpriced() -> None:
    assert pricing.cost_usd("my-finetune", 10, 10, table=pricing.default_prices()) is None


def test_gateway_prefix_is_stripped_for_lookup() -> None:
    table = pricing.default_prices()
    assert pricing.cost_usd("openai/gpt-4o", 1, 0, table=table) == pytest.approx(2.5e-6)


def test_user_file_is_merged_over_defaults(tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(json.dumps({
        "gpt-4o": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                   "max_tokens": 4096},
        "my-finetune": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6},
        "sample_spec": {"max_tokens": "set to max"},
    }))
    table = pricing.load_prices(override)
    assert table["gpt-4o"].input_cost_per_token == 1e-6
    assert table["my-finetune"].output_cost_per_token == 4e-6
    assert "gpt-4o-mini" in table


def test_env_selects_the_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    override = tmp_path / "prices.json"
    override.write_text(json.dumps(
        {"mine": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}}
    ))
    monkeypatch.setenv(pricing.PRICES_FILE_ENV, str(override))
    pricing.active_prices.cache_clear()
    try:
        assert pricing.cost_usd("mine", 1, 1) == pytest.approx(2e-6)
    finally:
        monkeypatch.delenv(pricing.PRICES_FILE_ENV)
        pricing.active_prices.cache_clear()


def test_malformed_entry_names_the_model(tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(json.dumps({"bad": {"input_cost_per_token": "cheap"}}))
    with pytest.raises(pricing.PricingError, match="bad"):
        pricing.load_prices(override)
