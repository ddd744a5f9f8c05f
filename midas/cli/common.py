"""Options and helpers shared by the command modules."""

from __future__ import annotations

from typing import Any

from midas.config import Settings, load_settings


def settings_from_options(**options: Any) -> Settings:
    """Settings from environment and .env, with command-line options (those not None) on top."""
    return load_settings(**options)
