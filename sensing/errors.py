"""The one base class for errors a user can cause (bad file, wrong device, bad argument).

The command line and the app catch it and show its message, one sentence naming the cause
and the fix, instead of a traceback. Each module derives its own error from it.
"""


class UserError(Exception):
    """An error caused by input or environment that the user can fix."""
