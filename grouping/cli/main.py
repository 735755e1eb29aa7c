"""The ``grouping`` command group: every command added, and errors as one line with exit code 2.

Bad input (an unknown plugin, an invalid config value, a missing file) is reported as one line on
stderr with exit code 2 and no traceback; ``--debug`` or ``GROUPING_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from grouping.cli.data import data_group
from grouping.cli.evaluate import evaluate_command
from grouping.cli.inspect import COMMANDS as INSPECT_COMMANDS
from grouping.cli.plugins import list_plugins
from grouping.cli.run import run_command
from grouping.cli.segment import COMMANDS as SEGMENT_COMMANDS
from grouping.errors import GroupingError, RunStopped, one_line
from grouping.version import __version__

#: Set to print the full traceback after the one-line error (also ``--debug``).
ENV_DEBUG = "GROUPING_DEBUG"


_debug_flag = {"on": False}  # --debug of the current invocation


def debugging() -> bool:
    return _debug_flag["on"] or os.environ.get(ENV_DEBUG, "") not in ("", "0")


def _report(text: str, code: int) -> None:
    """One line on stderr (plus the traceback when debugging), then exit with ``code``."""
    click.echo(text, err=True)
    if debugging():
        traceback.print_exc()
    sys.exit(code)


class OneLineErrors(click.Group):
    """A click group that reports user errors, its own and click's, as one line with exit code 2.

    ``--debug`` or ``GROUPING_DEBUG=1`` adds the full traceback after that line.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        _debug_flag["on"] = False
        try:
            code = super().main(*args, **kwargs)
        except GroupingError as exc:
            _report(f"error: {one_line(str(exc), 2000)}", 2)
        except RunStopped as exc:
            _report(one_line(str(exc), 2000), exc.exit_code)
        except click.exceptions.Abort:
            _report("aborted", 130)
        except click.ClickException as exc:
            _report(f"error: {exc.format_message()}", exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _debug_flag["on"] = value


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grouping")
@click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_debug,
    help="print the full traceback after an error (or set GROUPING_DEBUG=1)",
)
def cli() -> None:
    """Unsupervised perceptual grouping with Neural Expectation Maximization."""


for _command in (
    run_command,
    evaluate_command,
    list_plugins,
    data_group,
    *INSPECT_COMMANDS,
    *SEGMENT_COMMANDS,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="grouping")


if __name__ == "__main__":  # pragma: no cover
    main()
