"""Expected errors: the CLI prints them as one clear line and exits with their code, no traceback."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a failed expectation (unhealthy array, lint error, drill invariant broken)
EXIT_USAGE = 2  # usage or input error: nothing was changed


class UserError(Exception):
    """An error the user can fix; `str(err)` is the whole message."""

    exit_code = EXIT_USAGE
    prefix = "hacluster: "  # printed before the message (multi-line reports set "")

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
