"""`midas config`: the effective configuration and where each value came from."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from midas.config import Settings, load_settings, setting_sources


def config(
    env_file: str = typer.Option(".env", help="The .env file to read (if it exists)."),
) -> None:
    """Print every setting, its value and where it came from (option, environment, .env, default).

    An invalid value stops here with the variable's name, the value and what is allowed.
    """
    settings = load_settings(env_file=env_file)
    sources = setting_sources(env_file)
    table = Table(title="MIDAS configuration")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("from")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, list):
            value = ",".join(value)
        table.add_row(name.upper(), "" if value is None else str(value), sources[name])
    Console(width=120).print(table)


def register(app: typer.Typer) -> None:
    app.command("config")(config)
