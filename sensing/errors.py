"""The one base class for errors a user can cause (bad file, wrong device, bad argument),
and the one for warnings about input that is used, but not all of it or not as given.

The command line and the app catch the error and show its message, one sentence naming the
cause and the fix, instead of a traceback. Each module derives its own error from it, and
checks a file it is given with ``require_file``. The warning is issued with
``warnings.warn``; the command line shows its message as one line.
"""

from pathlib import Path


class UserError(Exception):
    """An error caused by input or environment that the user can fix."""


def require_file(path: Path, what: str, fix: str, error: type[UserError]) -> None:
    """Raise ``error`` unless ``path`` is a file: "{what} {path} is a folder, not a file" (a
    folder is not missing, and the fix is the file in it), else "{what} {path} does not exist;
    {fix}"."""
    if path.is_dir():
        raise error(f"{what} {path} is a folder, not a file; pass the file itself")
    if not path.is_file():
        raise error(f"{what} {path} does not exist; {fix}")


class InputWarning(UserWarning):
    """Input that is used, but cut or changed on the way (e.g. files of different lengths)."""
