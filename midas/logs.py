"""Structured logging: every line is `time level logger message key=value ...`.

Use `log_kv(logger, "message", symbol=..., hour=..., file=...)` so lines can be grepped by symbol,
hour and file. `setup_logging` also writes rotated files under `logs/<service>/` when asked.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _fmt_value(v: object) -> str:
    s = str(v)
    return f'"{s}"' if (" " in s or not s) else s


def kv(message: str, **fields: object) -> str:
    """`message key=value ...`, skipping fields that are None."""
    parts = [message] + [f"{k}={_fmt_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def log_kv(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, kv(message, **fields))


def setup_logging(level: str = "INFO", log_dir: Path | None = None, service: str | None = None) -> None:
    """Configure the `midas` logger: stderr, plus `log_dir/<service>/<service>.log` rotated at 20 MB."""
    root = logging.getLogger("midas")
    root.setLevel(level)
    if not any(getattr(h, "_midas", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._midas = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if log_dir is not None and service:
        path = Path(log_dir) / service
        path.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(path / f"{service}.log", maxBytes=20 << 20,
                                                  backupCount=5)
        fh.setFormatter(logging.Formatter(_FORMAT))
        fh._midas = True  # type: ignore[attr-defined]
        root.addHandler(fh)
