"""``python -m lvm.server``: runs ``lvm serve`` itself (the same function, options, help and error handling)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Run ``lvm serve`` with ``argv`` (default: the command line); a refused start-up exits with status 2."""
    from lvm.server.command import serve
    from lvm.util.user_errors import single_command

    try:
        single_command(serve)(args=argv, prog_name="python -m lvm.server")
    except SystemExit as exc:  # click ends every run with SystemExit: only a failure leaves main() that way
        if exc.code:
            raise


if __name__ == "__main__":
    main()
