"""Settings: one object from TRIPQUOTE_ variables, refusing unsafe values at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import make_url

from tripquote.config import DEFAULT_CURRENCIES, Settings, webhook_retry_schedule_seconds


def test_defaults_run_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRIPQUOTE_DATABASE_URL", "TRIPQUOTE_CURRENCIES", "TRIPQUOTE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url is None  # the tripquote command runs the embedded PostgreSQL
    assert settings.tx_timeout_seconds == 10
    assert settings.currencies == DEFAULT_CURRENCIES


RANDOM_SECRET = "3f9c1a7e5b2d8046c1e9a3b7d5f20864"  # openssl rand -hex 16


@pytest.mark.parametrize("secret", [None, "short-secret", "x" * 40, " " * 35, "ab" * 20])
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
    monkeypatch.setenv("TRIPQUOTE_JWT_SECRET", RANDOM_SECRET)
    assert Settings(_env_file=None).environment == "production"  # type: ignore[call-arg]


@pytest.mark.parametrize("secret", ["", "   "])
def test_an_empty_secret_is_refused_in_development_too(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    # Before: accepted, then every request with a token was a 500 (PyJWT's InvalidKeyError).
    monkeypatch.delenv("TRIPQUOTE_ENVIRONMENT", raising=False)
    monkeypatch.setenv("TRIPQUOTE_JWT_SECRET", secret)
    with pytest.raises(ValidationError, match="JWT_SECRET must not be empty"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("token", "production", "accepted"),
    [
        ("", False, False),  # before: "Authorization: Bearer " made anyone the operator
        (" ", False, False),
        ("two words", False, False),
        ("x", False, True),
        ("x", True, False),  # 16+ characters outside development
        ("Mtok-Quux-4242-Zeta", True, True),
        ("bXRva2VuLXRva2Vu==", True, True),
    ],
)
def test_the_metrics_token_is_a_bearer_token(
    monkeypatch: pytest.MonkeyPatch, token: str, production: bool, accepted: bool
) -> None:
    monkeypatch.setenv("TRIPQUOTE_METRICS_TOKEN", token)
    monkeypatch.setenv("TRIPQUOTE_JWT_SECRET", RANDOM_SECRET)
    monkeypatch.setenv("TRIPQUOTE_ENVIRONMENT", "production" if production else "development")
    if accepted:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.metrics_token is not None
        assert settings.metrics_token.get_secret_value() == token
    else:
        with pytest.raises(ValidationError, match="METRICS_TOKEN"):
            Settings(_env_file=None)  # type: ignore[call-arg]


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
        # Before, these passed and broke at start-up, disabled a guard or every write:
        ("TRIPQUOTE_IDEMPOTENCY_TTL_HOURS", "inf", "48"),  # an OverflowError traceback
        ("TRIPQUOTE_IDEMPOTENCY_TTL_HOURS", "1e12", "8784"),
        ("TRIPQUOTE_ALERT_DEDUP_WINDOW_SECONDS", "inf", "600"),
        ("TRIPQUOTE_ALERT_DEDUP_WINDOW_SECONDS", "nan", "0"),
        ("TRIPQUOTE_TX_TIMEOUT_SECONDS", "0.0009", "0.01"),  # statement_timeout 0: none at all
        ("TRIPQUOTE_TX_TIMEOUT_SECONDS", "nan", "5"),
        ("TRIPQUOTE_RATE_LIMIT", "0/minute", "1/minute"),  # every write a 429 forever
        ("TRIPQUOTE_PUBLIC_RATE_LIMIT", "0/second", "1/second"),
        ("TRIPQUOTE_ALERT_WEBHOOK_URL", "not-a-url", "https://hooks.example/T0"),
        ("TRIPQUOTE_ALERT_WEBHOOK_URL", "http://", "http://127.0.0.1:9/alerts"),
        ("TRIPQUOTE_TELEGRAM_API_BASE", "not-a-url", "http://127.0.0.1:9"),
        ("TRIPQUOTE_PUBLIC_BASE_URL", "https://user:pw@quotes.example", "https://quotes.example"),
        ("TRIPQUOTE_PUBLIC_BASE_URL", "https://quotes.example/#frag", "https://quotes.example/t"),
        ("TRIPQUOTE_MAX_BODY_BYTES", str(2**40), str(2**20)),
        ("TRIPQUOTE_IDEMPOTENCY_TTL_HOURS", "1e-9", "1"),  # idempotency off in practice
        ("TRIPQUOTE_TOKEN_MAX_TTL_SECONDS", "99999999999999", "31622400"),  # tokens to year 3M
        ("TRIPQUOTE_PUBLIC_BASE_URL", "http://example.com:99999", "https://example.com/@agency"),
        ("TRIPQUOTE_PUBLIC_BASE_URL", "http://exa mple.com", "http://[::1]:8000"),
        ("TRIPQUOTE_ALERT_WEBHOOK_URL", "http://example.com:abc/x", "http://example.com:9/x"),
        ("TRIPQUOTE_TELEGRAM_API_BASE", "https://api.telegram.org:99999", "http://localhost:9"),
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


def test_the_webhook_retention_outlasts_the_retry_schedule_by_a_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A delivery still pending goes with its day: the defaults retry for 33.1 h at most
    # (10 attempts, waits of 5 s x 4^n up to 10 h, +20 % jitter, 5 s each).
    assert webhook_retry_schedule_seconds(Settings(_env_file=None)) == pytest.approx(  # type: ignore[call-arg]
        1.2 * (5 + 20 + 80 + 320 + 1280 + 5120 + 20480 + 36000 + 36000) + 10 * 5
    )
    monkeypatch.setenv("TRIPQUOTE_WEBHOOK_RETENTION_DAYS", "2")
    with pytest.raises(ValidationError, match="at least 3 with these"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("TRIPQUOTE_WEBHOOK_RETENTION_DAYS", "3")
    assert Settings(_env_file=None).webhook_retention_days == 3  # type: ignore[call-arg]
    monkeypatch.setenv("TRIPQUOTE_WEBHOOK_MAX_ATTEMPTS", "30")  # 20 more waits of 12 h
    with pytest.raises(ValidationError, match="at least 13 with these"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_retention_in_hours_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPQUOTE_WEBHOOK_RETENTION_HOURS", "168")
    with pytest.raises(ValidationError, match="replaced by TRIPQUOTE_WEBHOOK_RETENTION_DAYS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_setting_has_its_row_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    listed = {name.strip(" `") for first_cell in rows for name in first_cell.split(",")}
    settings = {name.upper() for name in Settings.model_fields}
    assert sorted(settings - listed) == []  # named in a row's first cell, not in passing
    assert sorted(listed - settings) == []  # and no row for a setting that is gone


# --- configuration errors through the real command: name the variable, never a value ----------

SECRETS = {
    "TRIPQUOTE_JWT_SECRET": "jwt-Secret-Tiny",  # under 32 characters: refused in production
    "TRIPQUOTE_ALERT_WEBHOOK_SECRET": "whsec-Abcdefghijklmnopqrstuv",  # 28 characters
    "TRIPQUOTE_ALERT_WEBHOOK_URL": "https://hook:Hookpass-7531@hooks.example/T0/B0/Xq9Zk2Lm",
    "TRIPQUOTE_TELEGRAM_BOT_TOKEN": "123456789:AAH-telegram-Token-Zx81",
    "TRIPQUOTE_TELEGRAM_CHAT_ID": "-1001234",
    "TRIPQUOTE_METRICS_TOKEN": "Mtok-Quux-4242-Zeta",
    "TRIPQUOTE_RATE_LIMIT_STORAGE": "redis://:Redispass-8642@127.0.0.1:6379/0",
    "TRIPQUOTE_DATABASE_URL": "postgresql+asyncpg://postgres:Dbpass-9753@127.0.0.1:5432/x",
}
SECRET_VALUES = ("jwt-Secret-Tiny", "whsec-Abcdefghijklmnopqrstuv", "Hookpass-7531", "Xq9Zk2Lm")
SECRET_VALUES += ("AAH-telegram-Token-Zx81", "Mtok-Quux-4242-Zeta", "Redispass-8642", "Dbpass-9753")


def run_cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """``tripquote <args>`` as a process with only ``env`` as its TRIPQUOTE_ settings: its exit
    status and everything it wrote (stdout, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    done = subprocess.run(
        [sys.executable, "-m", "tripquote.cli", *args], env={**clean, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def assert_no_secret(output: str) -> None:
    for value in SECRET_VALUES:
        for start in range(len(value) - 5):  # not even a part of it (22 of 28 characters, …)
            assert value[start : start + 6] not in output, (value, output)


COMMANDS = [
    ("serve",),
    ("db", "current"),
    ("db", "upgrade"),
    ("token", "--agent", "a1"),
    ("token", "revoke", "--agent", "a1"),
    ("agents", "create", "--agency", "g1", "--email", "casey@demo.example"),
    ("agents", "disable", "a1"),
    ("agencies", "create", "X"),
    ("expire",),
    ("idempotency", "purge"),
    ("ops", "summary", "--since", "1h"),
    ("db", "downgrade", "-1"),
    ("demo", "--no-serve"),
]


@pytest.mark.parametrize(
    ("broken", "variables"),
    [
        ({"TRIPQUOTE_ENVIRONMENT": "production"}, ["TRIPQUOTE_JWT_SECRET"]),
        (
            {"TRIPQUOTE_DATABASE_URL": "postgresql+asyncpg://u:Dbpass-9753@127.0.0.1:notaport/x"},
            ["TRIPQUOTE_DATABASE_URL"],
        ),
        (
            {"TRIPQUOTE_RATE_LIMIT_STORAGE": "redis+bogus://:Redispass-8642@127.0.0.1:6379"},
            ["TRIPQUOTE_RATE_LIMIT_STORAGE"],
        ),
        (
            {"TRIPQUOTE_TX_TIMEOUT_SECONDS": "soon", "TRIPQUOTE_ALERT_MAX_ATTEMPTS": "0"},
            ["TRIPQUOTE_TX_TIMEOUT_SECONDS", "TRIPQUOTE_ALERT_MAX_ATTEMPTS"],
        ),
        ({"TRIPQUOTE_CURRENCIES": "EUR,s3cretC"}, ["TRIPQUOTE_CURRENCIES"]),
        ({"TRIPQUOTE_RATE_LIMIT": "s3cretD"}, ["TRIPQUOTE_RATE_LIMIT"]),
    ],
    ids=[
        "weak-jwt-secret",
        "database-url",
        "rate-limit-storage",
        "two-numbers",
        "currency",
        "rate-limit",
    ],
)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_configuration_error_names_each_variable_and_no_secret(
    tmp_path: Path, broken: dict[str, str], variables: list[str], command: tuple[str, ...]
) -> None:
    status, output = run_cli(*command, env={**SECRETS, **broken}, cwd=tmp_path)
    assert status == 2, output
    (line,) = output.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "configuration_error"
    for variable in variables:
        assert variable in event["error"]
    assert "input_value" not in line
    assert_no_secret(output)
    for value in broken.values():  # never a value, in whatever case the rule saw it
        for part in (value, *value.split(",")):
            if len(part) >= 6:
                assert part not in output and part.upper() not in output, part


def test_the_demo_does_not_print_the_database_password(tmp_path: Path, db_url: str) -> None:
    # The tests' PostgreSQL trusts local connections: any password is accepted.
    url = make_url(db_url)
    password = url.password or "Dbpass-9753"
    status, output = run_cli(
        "demo", "--no-serve",
        env={"TRIPQUOTE_DATABASE_URL": url.set(password=password).render_as_string(False)},
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, output
    assert "Demo data ready" in output
    assert str(password) not in output
