"""What every flow does first: read the settings (environment and .env, parameters on top) and set
up the `midas` loggers (level LOG_LEVEL; with LOG_DIR also `LOG_DIR/<service>/<service>.log`,
rotated). With PREFECT_LOGGING_EXTRA_LOGGERS=midas (prefect.yaml, compose, Makefile set it) their
lines also reach the Prefect UI."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import Any

from midas.config import Settings, load_settings
from midas.logs import setup_logging


def flow_settings(service: str, **overrides: Any) -> Settings:
    settings = load_settings(**overrides)
    log_dir = settings.log_dir
    if log_dir is not None:
        target = (Path(log_dir) / service / f"{service}.log").resolve()
        if any(isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == target
               for h in logging.getLogger("midas").handlers):
            log_dir = None                  # this process logs there already
    setup_logging(settings.log_level, log_dir, service)
    return settings
