"""Settings: one object from TRIPQUOTE_ variables, refusing unsafe values at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tripquote.config import DEFAULT_CURRENCIES, Settings


def test_defaults_run_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRIPQUOTE_DATABASE_URL", "TRIPQUOTE_CURRENCIES", "TRIPQUOTE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.is_sqlite and settings.tx_timeout_seconds == 10
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
