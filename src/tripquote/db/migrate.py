"""Alembic, driven from Settings: upgrade, downgrade, current."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from tripquote.config import Settings


def alembic_config(settings: Settings) -> Config:
    """An Alembic config whose scripts ship inside the package and whose URL is the settings'."""
    config = Config()
    config.set_main_option("script_location", "tripquote:migrations")
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` removes every table)."""
    command.downgrade(alembic_config(settings), revision)


def current(settings: Settings) -> None:
    """Print the revision the database is at."""
    command.current(alembic_config(settings), verbose=False)
