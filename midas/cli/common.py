"""Options and helpers shared by the command modules."""

from __future__ import annotations

from typing import Any

from midas.config import Settings, load_settings


def settings_from_options(**options: Any) -> Settings:
    """Settings from environment and .env, with command-line options (those not None) on top."""
    return load_settings(**options)


class HourChoice:
    """The hours a command was asked for: `--hour` ones (each must have data: asking for an hour
    without any is an error) and a `--from/--to` range (hours without data inside it are skipped
    and counted, so a day with a quiet hour is still processed). Nothing asked = every available hour."""

    def __init__(self, hours: list[str], start: str | None, end: str | None):
        from midas.errors import ConfigError
        from midas.layout import hours_between, parse_hour

        self.explicit = sorted({parse_hour(h) for h in hours})
        self.ranged: list = []
        self.asked = bool(self.explicit)
        if start or end:
            if not (start and end):
                raise ConfigError("--from and --to go together: give both, e.g. --from 2024-07-18T00 "
                                  "--to 2024-07-18T23")
            first, last = parse_hour(start), parse_hour(end)
            if first > last:
                raise ConfigError(f"--from {start} is after --to {end}: the range would be empty")
            self.ranged = hours_between(first, last)
            self.asked = True

    def pick(self, available: list) -> tuple[list, int]:
        """(hours to do, in time order; hours of the range skipped for lack of data)."""
        if not self.asked:
            return sorted(available), 0
        have = set(available)
        in_range = [h for h in self.ranged if h in have]
        return sorted(set(self.explicit) | set(in_range)), len(self.ranged) - len(in_range)


def no_data_error(what: str, data_dir, venue: str, symbols: list[str]):
    """The DataError of a command that found nothing to work on, naming what does exist."""
    from midas.errors import DataError
    from midas.layout import list_symbols

    present = list_symbols(data_dir, venue)
    where = (f"symbols with raw data there: {', '.join(present)}" if present
             else f"{data_dir} holds no raw data of {venue} (wrong --data-dir or --venue?)")
    return DataError(f"no {what} for {', '.join(symbols)} on {venue} under {data_dir}; {where}")



def require_data_dir(settings: Settings) -> None:
    """Refuse a data directory that does not exist: a mistyped --data-dir would otherwise read as
    "nothing here yet", or be created empty."""
    from pathlib import Path

    from midas.errors import DataError

    if not Path(settings.data_dir).is_dir():
        raise DataError(f"data directory {settings.data_dir} does not exist (DATA_DIR or --data-dir)")
