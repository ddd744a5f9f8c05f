"""Loads the SQL files of `sql/` by name: `sql_text("features", "features")` reads
`sql/features/features.sql`.

The `sql/` directory sits at the repository root, next to the `midas/` package, and is found from
this file's location: `<repo>/midas/sqlfiles.py` -> `<repo>/sql/`. That works when MIDAS runs from
the source tree or is installed editable (`pip install -e .`, what `make setup` does), which is the
supported way to install it. Each file holds one SQL object (file name = object name) and starts
with a comment saying what it produces and at what grain. Python never builds SQL from input: it
passes values as named parameters (`$hour_start`) and uses these files verbatim.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from midas.errors import MidasError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SqlFileError(MidasError):
    """A SQL file of `sql/` is missing or its name is not a plain identifier."""


def check_identifier(name: str) -> str:
    """`name` if it is a plain lower-case SQL identifier (letters, digits, underscore), else an error."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise SqlFileError(f"{name!r} is not a plain SQL identifier (^[a-z_][a-z0-9_]{{0,62}}$)")
    return name


def sql_path(group: str, name: str) -> Path:
    """The path of `sql/<group>/<name>.sql` (both parts checked to be plain identifiers)."""
    return SQL_DIR / check_identifier(group) / f"{check_identifier(name)}.sql"


@lru_cache(maxsize=None)
def sql_text(group: str, name: str) -> str:
    """The text of `sql/<group>/<name>.sql`."""
    path = sql_path(group, name)
    if not path.is_file():
        raise SqlFileError(
            f"SQL file {path} not found: MIDAS reads its SQL from the sql/ directory of the source "
            "tree; install it from the repository with `pip install -e .` (make setup)")
    return path.read_text(encoding="utf-8")


def sql_names(group: str) -> list[str]:
    """The object names of every `sql/<group>/*.sql`, sorted."""
    folder = SQL_DIR / check_identifier(group)
    return sorted(p.stem for p in folder.glob("*.sql"))
