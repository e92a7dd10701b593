"""The one error type UAE raises for problems a user can fix.

Every stage raises :class:`UAEError` with a message that names the input (file, setting or model) and
what to do about it; ``python -m uae.run`` prints that paragraph and exits non-zero instead of a
traceback. Anything else escaping is a bug in UAE, not in the user's input.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


class UAEError(Exception):
    """A problem with the user's input or environment, explained in one paragraph."""


class DataError(UAEError):
    """A data file is missing, malformed, or does not hold what a run asks for."""


class ModelNotFoundError(UAEError):
    """A model id could not be resolved to a readable local folder."""


class CacheMismatchError(UAEError):
    """A cache on disk was made with other settings than the run asks for."""


class DamagedFileError(CacheMismatchError):
    """A file's bytes are not the ones written: its content digest does not match, or it cannot be read."""


def cli_main(main: Callable[P, int]) -> Callable[P, int]:
    """A ``python -m uae.X`` entry point: a :class:`UAEError` is the user's to fix, so it is printed as one
    ``error: ...`` paragraph with exit status 2 instead of a traceback; anything else stays a traceback (a bug)."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UAEError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run
