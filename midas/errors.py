"""The error tree of MIDAS. Every error says what was wrong, where, and what to do.

    MidasError
    ├── ConfigError        an invalid setting (names the variable, the value and what is allowed)
    ├── LayoutError        a symbol, venue, date or hour that cannot be used in a path
    ├── WireError          a message from the exchange that is not what Binance sends
    ├── RawFileError       a raw file that cannot be read or written (names the file)
    ├── ExchangeError      the exchange answered with an error (REST code, HTTP status)
    ├── CollectorError     the collector cannot go on (write error, disk full, too many reconnects)
    ├── DataError          data that cannot be processed (names file and line)
    └── CatalogError       the DuckDB catalog cannot be opened or written
        └── CatalogLockedError   another process holds the catalog's write lock for too long
"""

from __future__ import annotations


class MidasError(Exception):
    """Base of every error MIDAS raises on purpose."""


class ConfigError(MidasError):
    """An invalid setting: names the variable, the value and what is allowed."""


class LayoutError(MidasError, ValueError):
    """A symbol, venue, dataset, date or hour that cannot be used in a path or in SQL."""


class WireError(MidasError, ValueError):
    """A message from the exchange that is not what Binance sends (says which field)."""


class RawFileError(MidasError):
    """A raw file that cannot be read or written (names the file)."""


class ExchangeError(MidasError):
    def __init__(self, message: str, *, status: int | None = None, code: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class CollectorError(MidasError):
    """The collector cannot go on (write error, disk full, too many reconnects)."""


class DataError(MidasError):
    """Data that cannot be processed (names file and line)."""


class CatalogError(MidasError):
    """The DuckDB catalog cannot be opened or written."""


class CatalogLockedError(CatalogError):
    """Another process held the catalog's write lock for longer than the timeout."""
