"""The `midas` command. Each command group lives in its own module of this package and registers
itself on `app`; `main()` turns every MidasError into a one-paragraph message and exit code 2."""

from __future__ import annotations

import importlib
import sys

import typer

from midas.errors import MidasError

app = typer.Typer(
    name="midas",
    help=("MIDAS records Binance order books and trades, rebuilds the exact book on a 100 ms grid, "
          "computes features and lets you query everything with SQL.\n\n"
          "Configuration comes from the environment and .env (see `midas config`); options override it."),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, each with a `register(app)` function. Order = order in `midas --help`.
COMMAND_MODULES = [
    "midas.cli.config_cmd",
    "midas.cli.exchange_cmd",
    "midas.cli.collect_cmd",
    "midas.cli.demo_cmd",
    "midas.cli.ops_cmd",
    "midas.cli.features_cmd",
    "midas.cli.book_cmd",
]


@app.callback()
def _root(
    log_level: str = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING or ERROR (default: LOG_LEVEL)."),
) -> None:
    """Set up logging before any command runs."""
    from midas.logs import setup_logging

    setup_logging(log_level or "INFO")


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    try:
        # With standalone_mode=False click returns the code of a `typer.Exit(code)` instead of raising.
        result = app(args=argv, standalone_mode=False)
        if isinstance(result, int) and not isinstance(result, bool):
            return result
    except MidasError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 1
    except Exception as e:
        # Usage errors of the CLI framework (bad option, missing argument) print themselves.
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
