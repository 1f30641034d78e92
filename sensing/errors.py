"""The one base class for errors a user can cause (bad file, wrong device, bad argument),
and the one for warnings about input that is used, but not all of it or not as given.

The command line and the app catch the error and show its message, one sentence naming the
cause and the fix, instead of a traceback. Each module derives its own error from it. The
warning is issued with ``warnings.warn``; the command line shows its message as one line.
"""


class UserError(Exception):
    """An error caused by input or environment that the user can fix."""


class InputWarning(UserWarning):
    """Input that is used, but cut or changed on the way (e.g. files of different lengths)."""
