"""Dispatcher settings read from the environment: the value, or an error naming the variable."""

from __future__ import annotations

import pytest

from postback.cli.config import ConfigError, Settings


def test_the_hanging_endpoint_share_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTBACK_HANGING_ENDPOINT_CONCURRENCY", raising=False)
    assert Settings.from_env().hanging_endpoint_concurrency == 4
    monkeypatch.setenv("POSTBACK_HANGING_ENDPOINT_CONCURRENCY", "8")
    assert Settings.from_env().hanging_endpoint_concurrency == 8
    for bad in ("0", "four"):
        monkeypatch.setenv("POSTBACK_HANGING_ENDPOINT_CONCURRENCY", bad)
        with pytest.raises(ConfigError, match="POSTBACK_HANGING_ENDPOINT_CONCURRENCY"):
            Settings.from_env()
