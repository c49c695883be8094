"""Smoke checks of the foundation types the other tiers rely on."""

from __future__ import annotations

import pytest

from ocs import config, money


def test_money_round_trip() -> None:
    assert money.parse("12.50") == 12_500_000
    assert money.format(12_500_000) == "12.50"
    assert money.format(86_000, places=6) == "0.086000"
    with pytest.raises(money.MoneyError):
        money.parse("0.0000001")


def test_shipped_config_is_the_defaults() -> None:
    assert config.load("config/ocs.toml", env={}) == config.from_mapping(
        {"radius": {"clients": [{"address": "127.0.0.1/32", "secret": "testing123", "name": "local"}]}},
        env={},
    )
