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


def test_the_circuit_breaker_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAILURES", "PAUSE_SECONDS", "MAX_PAUSE_SECONDS"):
        monkeypatch.delenv(f"POSTBACK_BREAKER_{name}", raising=False)
    settings = Settings.from_env()
    assert (settings.breaker_failures, settings.breaker_pause_s) == (10, 5)
    assert settings.breaker_max_pause_s == 60
    monkeypatch.setenv("POSTBACK_BREAKER_FAILURES", "0")
    monkeypatch.setenv("POSTBACK_BREAKER_MAX_PAUSE_SECONDS", "300")
    settings = Settings.from_env()
    assert (settings.breaker_failures, settings.breaker_max_pause_s) == (0, 300)
    for name, bad in (("FAILURES", "-1"), ("PAUSE_SECONDS", "0"), ("MAX_PAUSE_SECONDS", "x")):
        monkeypatch.setenv(f"POSTBACK_BREAKER_{name}", bad)
        with pytest.raises(ConfigError, match=f"POSTBACK_BREAKER_{name}"):
            Settings.from_env()
        monkeypatch.delenv(f"POSTBACK_BREAKER_{name}")


def test_serve_runs_two_processes_by_default_where_there_are_two_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import postback.cli.config as config

    monkeypatch.delenv("POSTBACK_PROCESSES", raising=False)
    for cores, expected in ((1, 1), (2, 2), (64, 2)):
        monkeypatch.setattr(config.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert config.available_cores() == cores
        assert Settings.from_env().processes == expected
        assert Settings().processes == expected
        monkeypatch.setenv("POSTBACK_PROCESSES", "auto")
        assert Settings.from_env().processes == cores
        monkeypatch.delenv("POSTBACK_PROCESSES")
    monkeypatch.setenv("POSTBACK_PROCESSES", "3")
    assert Settings.from_env().processes == 3
    for bad in ("0", "two", "257"):
        monkeypatch.setenv("POSTBACK_PROCESSES", bad)
        with pytest.raises(ConfigError, match="POSTBACK_PROCESSES"):
            Settings.from_env()
