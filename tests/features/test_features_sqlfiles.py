"""sql/ files: found from the package, one object per file named like the file, with a header."""

from __future__ import annotations

import re

import pytest

from midas.sqlfiles import SQL_DIR, SqlFileError, check_identifier, sql_names, sql_path, sql_text


def test_sql_dir_is_the_repository_sql_folder(repo_root):
    assert SQL_DIR == repo_root / "sql"
    assert sql_path("features", "features") == repo_root / "sql" / "features" / "features.sql"


@pytest.mark.parametrize("group", ["features", "catalog"])
def test_every_file_is_one_named_object_with_a_header(group):
    names = sql_names(group)
    assert names, f"no SQL files in sql/{group}"
    for name in names:
        text = sql_text(group, name)
        assert text.startswith(f"-- {name}: "), f"sql/{group}/{name}.sql: header must start with '-- {name}: '"
        created = re.findall(r"CREATE (?:OR REPLACE )?(?:TEMP )?(?:MACRO|VIEW|TABLE(?: IF NOT EXISTS)?) (\w+)", text)
        assert created in ([], [name]), f"sql/{group}/{name}.sql creates {created}"
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        assert body.strip().endswith(";") and body.count(";") == 1, f"sql/{group}/{name}.sql: one statement"


@pytest.mark.parametrize("bad", ["features; DROP", "../features", "Features", "a b", "", "x" * 64])
def test_names_must_be_plain_identifiers(bad):
    with pytest.raises(SqlFileError, match="is not a plain SQL identifier"):
        check_identifier(bad)
    with pytest.raises(SqlFileError, match="is not a plain SQL identifier"):
        sql_text("features", bad)


def test_missing_file_is_a_clear_error():
    with pytest.raises(SqlFileError, match=r"sql/features/no_such_object.sql not found: .*pip install -e"):
        sql_text("features", "no_such_object")
