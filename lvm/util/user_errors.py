"""A user's mistake ends as one `error: ...` line and exit code 2, a run that failed on good input (a training that
diverged, a full disk) as one `error: ...` line and exit code 1, never a traceback: for `lvm` and every program that
is one of its commands (``python -m lvm.server``)."""

from __future__ import annotations

import os

import click
import typer
from typer.core import TyperCommand, TyperGroup

from lvm.util.errors import UserError


class ReportUserErrors:
    """Every command's user mistakes end as one `error: ...` line and exit code 2, never a traceback.

    Set LVM_DEBUG=1 to see the traceback instead (for bug reports)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, typer.Exit, click.ClickException, click.Abort, typer.Abort):
            raise
        except user_errors() as exc:
            if os.environ.get("LVM_DEBUG"):
                raise
            fail(exc)


class UserErrorsGroup(ReportUserErrors, TyperGroup):
    """`lvm` and its subcommands."""


class UserErrorsCommand(ReportUserErrors, TyperCommand):
    """One command run as a program of its own (see `single_command`)."""


def single_command(function) -> typer.Typer:
    """A program that is one of `lvm`'s commands (``python -m lvm.server`` is `serve`): the same options, help
    and error handling, without the other commands."""
    program = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    program.command(cls=UserErrorsCommand)(function)
    return program


def fail(exc: Exception) -> None:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{msg}: {exc.filename}"
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(1 if is_failure(exc) else 2)


def is_failure(exc: BaseException) -> bool:
    """A run that failed (exit 1) rather than a mistake in what was asked (exit 2): the training diverged, the
    disk is full or unwritable, a run produced nothing. A missing or wrong file, a bad value: exit 2."""
    from lvm.util.locking import FolderBusy  # a folder another run holds: choose another one

    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, FolderBusy)):
        return False
    return isinstance(exc, (FloatingPointError, RuntimeError, OSError)) and not isinstance(exc, UserError)


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can raise from the library: bad files (CorpusError and DataValidationError are
    ValueErrors), bad options, the registry's refusals, a full or read-only disk."""
    from safetensors import SafetensorError

    return (UserError, SafetensorError, OSError, ValueError, TypeError, RuntimeError, FloatingPointError)
