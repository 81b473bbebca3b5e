"""Alembic, driven from Settings: upgrade, downgrade, current."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from tripquote.config import Settings

SCRIPT_LOCATION = "tripquote:migrations"


CONNECT_TARGET = "tripquote.connect_target"
"""The Alembic config attribute holding ``db.engine.connect_target(settings)``: the parsed URL
(both multi-host forms) and its typed ``connect()`` arguments, for ``migrations/env.py``."""


def alembic_config(settings: Settings) -> Config:
    """An Alembic config whose scripts ship inside the package and whose URL is the settings'."""
    from tripquote.db.engine import connect_target

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", settings.require_database_url().replace("%", "%%"))
    config.attributes[CONNECT_TARGET] = connect_target(settings)
    return config


def revisions() -> tuple[str, frozenset[str]]:
    """(the newest revision this release ships, every revision it ships)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    scripts = ScriptDirectory.from_config(config)
    return scripts.get_current_head() or "", frozenset(r.revision for r in scripts.walk_revisions())


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` removes every table)."""
    command.downgrade(alembic_config(settings), revision)


def current(settings: Settings) -> tuple[str, ...]:
    """The revisions the database is at (one, unless branches were merged); () when it was
    never migrated (no ``alembic_version`` row)."""
    config = alembic_config(settings)
    scripts = ScriptDirectory.from_config(config)
    heads: list[str] = []

    def read(_revision: Any, context: Any) -> list[Any]:
        heads.extend(context.get_current_heads())
        return []  # no migration to run

    with EnvironmentContext(config, scripts, fn=read, dont_mutate=True):
        scripts.run_env()
    return tuple(heads)
