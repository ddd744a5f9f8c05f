"""The one settings model of MIDAS (SPEC §5), read from the environment and `.env`.

This is the only module that reads the environment. `load_settings()` turns every invalid value
into a `ConfigError` naming the variable, the bad value and what is allowed, before anything runs.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from midas.errors import ConfigError
from midas.venues import VENUE_NAMES, VENUES

SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9]{2,20}$")
STREAM_KINDS = ("depth", "trade", "bookTicker")
MICROS_PER_HOUR = 3_600_000_000


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of MIDAS. Environment variable = field name in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        validate_default=True,
    )

    venue: Literal["binance", "binance-futures"] = Field(
        "binance-futures", description="binance (spot) or binance-futures (USD-M perpetuals)")
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT"], validation_alias=AliasChoices("symbols", "symbol"),
        description="comma-separated symbols; SYMBOL is a one-symbol alias")
    data_dir: Path = Field(Path("data"), description="root of raw/, clean/, features/, midas.duckdb")
    ws_url: str | None = Field(None, description="WebSocket base URL (default: the venue's Binance URL)")
    ws_public_url: str | None = Field(
        None, description="WebSocket base for depth and bookTicker (default: WS_URL, plus /public on binance-futures)")
    ws_market_url: str | None = Field(
        None, description="WebSocket base for trades (default: WS_URL, plus /market on binance-futures)")
    rest_url: str | None = Field(None, description="REST base URL (default: the venue's Binance URL)")
    streams: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["depth", "trade"], description="any of depth, trade, bookTicker")
    stall_timeout_secs: float = Field(30, gt=0, description="no message for this long = reconnect")
    file_rotation_hours: float = Field(1, gt=0, le=24, description="raw file rotation period")
    file_rotation_gb: float = Field(1, gt=0, description="raw file size that starts a new part")
    flush_interval_secs: float = Field(1, gt=0, le=60, description="longest a received message stays unflushed")
    reconnect_delay_secs: float = Field(5, gt=0, le=60, description="first reconnect delay (doubles up to 60 s)")
    max_reconnect_attempts: int = Field(0, ge=0, description="0 = retry forever")
    max_connection_age_secs: float = Field(
        23.5 * 3600, gt=0, le=24 * 3600,
        description="planned reconnect before Binance's 24 h connection limit")
    snapshot_depth_limit: int = Field(1000, description="REST snapshot depth")
    snapshot_interval_ms: int = Field(100, gt=0, description="book grid interval")
    order_book_depth: int = Field(10, ge=1, le=100, description="levels stored per side")
    process_batch_size: int = Field(100_000, ge=1, description="raw records read per batch")
    time_bucket_ms: int = Field(100, gt=0, description="trade bucket")
    ofi_window: int = Field(10, ge=1, description="grid intervals summed in ofi_10")
    parquet_row_group_size: int = Field(50_000, ge=1, description="rows per Parquet row group")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_dir: Path | None = Field(None, description="also write rotated logs under this directory")
    demo_seconds: float = Field(120, gt=0, description="collection time of `make demo`")
    demo_data_dir: Path | None = Field(None, description="data directory of `make demo` (default DATA_DIR)")

    @field_validator("ws_url", "ws_public_url", "ws_market_url", "rest_url", "log_dir", "demo_data_dir",
                     mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        # `WS_URL=` in .env means "the default", not "an empty URL".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, values: Any) -> Any:
        # `DATA_DIR=` (as .env.example lists every variable) means "the default"; an empty
        # DATA_DIR would otherwise be the current directory. An empty SYMBOLS or STREAMS stays an
        # error: collecting nothing is never what was meant.
        if isinstance(values, dict):
            return {k: v for k, v in values.items()
                    if k.lower() in _MUST_NOT_BE_EMPTY or not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("symbols", mode="before")
    @classmethod
    def _parse_symbols(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is needed, e.g. BTCUSDT or BTCUSDT,ETHUSDT")
        out: list[str] = []
        for sym in value:
            if not SYMBOL_PATTERN.match(sym):
                raise ValueError(
                    f"symbol {sym!r} is not allowed: 2 to 20 letters or digits (^[A-Za-z0-9]{{2,20}}$)")
            if sym.upper() not in out:
                out.append(sym.upper())
        return out

    @field_validator("streams", mode="before")
    @classmethod
    def _parse_streams(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("streams")
    @classmethod
    def _check_streams(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one stream is needed: depth, trade, bookTicker")
        for s in value:
            if s not in STREAM_KINDS:
                raise ValueError(f"stream {s!r} is unknown: allowed are depth, trade, bookTicker")
        return list(dict.fromkeys(value))

    @field_validator("ws_url", "ws_public_url", "ws_market_url")
    @classmethod
    def _check_ws_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^wss?://[^\s/]+", value):
            raise ValueError("must be a ws:// or wss:// base URL such as wss://fstream.binance.com")
        return value.rstrip("/") if value else value

    @field_validator("rest_url")
    @classmethod
    def _check_rest_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// base URL such as https://fapi.binance.com")
        return value.rstrip("/") if value else value

    @field_validator("snapshot_interval_ms", "time_bucket_ms")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        # Grid times must line up with hour boundaries, or an hour would not be complete on its own.
        if 3_600_000 % value:
            raise ValueError("must divide one hour (3600000 ms) evenly, e.g. 100, 250, 1000")
        return value

    @model_validator(mode="after")
    def _venue_rules(self) -> "Settings":
        spec = VENUES[self.venue]
        if not spec.valid_snapshot_limit(self.snapshot_depth_limit):
            raise ValueError(
                f"SNAPSHOT_DEPTH_LIMIT={self.snapshot_depth_limit} is not allowed on {self.venue}: "
                f"use {spec.allowed_limits_text()}")
        if self.ws_url is None:
            self.ws_url = spec.ws_base
        if self.ws_public_url is None:
            self.ws_public_url = self.ws_url + spec.route_path("public")
        if self.ws_market_url is None:
            self.ws_market_url = self.ws_url + spec.route_path("market")
        if self.rest_url is None:
            self.rest_url = spec.rest_base
        return self

    # Derived values -----------------------------------------------------------------------------

    @property
    def venue_spec(self):
        return VENUES[self.venue]

    def ws_bases(self) -> dict[str, list[str]]:
        """The WebSocket bases the configured streams need, each with its stream kinds in STREAMS
        order: one base on spot, /public and /market on USD-M futures (when both kinds are asked)."""
        from midas.venues import STREAM_ROUTES

        bases: dict[str, list[str]] = {}
        for kind in self.streams:
            base = self.ws_public_url if STREAM_ROUTES[kind] == "public" else self.ws_market_url
            bases.setdefault(base, []).append(kind)
        return bases

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "midas.duckdb"

    @property
    def snapshot_interval_us(self) -> int:
        return self.snapshot_interval_ms * 1000


_MUST_NOT_BE_EMPTY = {"symbols", "symbol", "streams"}
_warned: set[str] = set()


def _format_validation_error(err: ValidationError, sources: dict[str, str] | None = None) -> str:
    lines = ["invalid configuration:"]
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if not isinstance(p, int)]
        var = loc[0].upper() if loc else "configuration"
        value = e.get("input")
        msg = e.get("msg", "").removeprefix("Value error, ")
        if e.get("type") == "literal_error" and var == "VENUE":
            msg = f"allowed are {', '.join(VENUE_NAMES)}"
        source = (sources or {}).get(loc[0].lower() if loc else "", "")
        where = "" if not source or source.startswith("default") else (
            f" (set by the option --{loc[0].replace('_', '-')})" if source == "option"
            else " (set in the environment)" if source == "environment" else f" (set in {source})")
        if isinstance(value, dict):
            lines.append(f"  {msg}")
        else:
            lines.append(f"  {var}={value!r}: {msg}{where}")
    return "\n".join(lines)


def _near_misses(env_file: str | Path | None) -> list[str]:
    """Names in the .env file that are not settings but look like one mistyped (OFI_WINDW):
    ignored silently, they would leave the default in force without anyone noticing. Other tools'
    variables in the same file (PREFECT_API_URL, ...) resemble no setting and are left alone."""
    import difflib

    from dotenv import dotenv_values

    if not env_file or not Path(env_file).is_file():
        return []
    known = [name.upper() for name in Settings.model_fields] + ["SYMBOL"]
    out = []
    for key in dotenv_values(env_file):
        name = key.upper()
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if close:
            out.append(f"{env_file}: {key} is not a setting; did you mean {close[0]}? (it is ignored)")
    return out


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read the settings; `overrides` (from command-line options) win over environment and `.env`.

    Raises ConfigError, naming each bad variable, its value and what is allowed.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for warning in _near_misses(env_file):
        if warning not in _warned:      # once per process: a command reads its settings often
            _warned.add(warning)
            logging.getLogger("midas.config").warning(warning)
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, setting_sources(env_file, overrides))) from None


def setting_sources(env_file: str | Path | None = ".env", overrides: dict[str, Any] | None = None
                    ) -> dict[str, str]:
    """Where each setting's value came from: `option`, `environment`, `.env` or `default`."""
    from dotenv import dotenv_values

    file_values: dict[str, Any] = {}
    if env_file and Path(env_file).is_file():
        file_values = {k.lower(): v for k, v in dotenv_values(env_file).items()}
    env = {k.lower() for k in os.environ}
    overrides = {k for k, v in (overrides or {}).items() if v is not None}
    sources: dict[str, str] = {}
    for name in Settings.model_fields:
        aliases = [name] + (["symbol"] if name == "symbols" else [])
        if name in overrides:
            sources[name] = "option"
        elif any(a in env for a in aliases):
            sources[name] = "environment"
        elif any(a in file_values for a in aliases):
            sources[name] = str(env_file)
        elif name in ("ws_url", "rest_url"):
            sources[name] = "default (venue)"
        elif name in ("ws_public_url", "ws_market_url"):
            sources[name] = "default (WS_URL + venue route)"
        else:
            sources[name] = "default"
    return sources
