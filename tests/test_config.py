"""Settings: one object from TRIPQUOTE_ variables, refusing unsafe values at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tripquote.config import DEFAULT_CURRENCIES, Settings


def test_defaults_run_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRIPQUOTE_DATABASE_URL", "TRIPQUOTE_CURRENCIES", "TRIPQUOTE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url is None  # the tripquote command runs the embedded PostgreSQL
    assert settings.tx_timeout_seconds == 10
    assert settings.currencies == DEFAULT_CURRENCIES


@pytest.mark.parametrize("secret", [None, "short-secret"])
def test_production_refuses_a_default_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("TRIPQUOTE_ENVIRONMENT", "production")
    if secret is None:
        monkeypatch.delenv("TRIPQUOTE_JWT_SECRET", raising=False)
    else:
        monkeypatch.setenv("TRIPQUOTE_JWT_SECRET", secret)
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("TRIPQUOTE_JWT_SECRET", "x" * 40)
    assert Settings(_env_file=None).environment == "production"  # type: ignore[call-arg]


def test_currency_whitelist_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPQUOTE_CURRENCIES", "usd, EUR ,nok")
    assert Settings(_env_file=None).currencies == ("USD", "EUR", "NOK")  # type: ignore[call-arg]
    monkeypatch.setenv("TRIPQUOTE_CURRENCIES", "EURO")
    with pytest.raises(ValidationError, match="ISO 4217"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_open_quote_limit_fits_the_databases_32_bit_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIPQUOTE_MAX_OPEN_QUOTES_PER_AGENT", str(2**31 - 1))
    assert Settings(_env_file=None).max_open_quotes_per_agent == 2**31 - 1  # type: ignore[call-arg]
    monkeypatch.setenv("TRIPQUOTE_MAX_OPEN_QUOTES_PER_AGENT", str(2**31))
    with pytest.raises(ValidationError, match="max_open_quotes_per_agent"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "bad", "good"),
    [
        ("TRIPQUOTE_LOG_LEVEL", "LOUD", "warning"),
        ("TRIPQUOTE_RATE_LIMIT", "garbage", "5 per minute"),
        ("TRIPQUOTE_RATE_LIMIT", "120/fortnight", "120/hour"),
        ("TRIPQUOTE_RATE_LIMIT_STORAGE", "bogus://x", "redis://127.0.0.1:6379/0"),
        ("TRIPQUOTE_RATE_LIMIT_STORAGE", "127.0.0.1:6379", "memory://"),
        (
            "TRIPQUOTE_DATABASE_URL",
            "sqlite+aiosqlite:///./tripquote.db",
            "postgresql+asyncpg://x/y",
        ),
    ],
)
def test_settings_the_server_would_crash_on_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, bad: str, good: str
) -> None:
    # Before, these passed validation and failed later: a traceback at start-up (log level,
    # storage) or on the first write (rate limit).
    monkeypatch.setenv(name, bad)
    with pytest.raises(ValidationError, match=name.removeprefix("TRIPQUOTE_").lower()):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv(name, good)
    Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert [name for name in Settings.model_fields if f"`{name.upper()}`" not in table] == []
