"""A private X server (Xvfb) for drawing the Qt 3D view where there is no display.

``virtual_display()`` starts ``Xvfb -displayfd`` (the server picks a free display number and
reports it, so parallel runs never collide), points ``DISPLAY`` at it with
``QT_QPA_PLATFORM=xcb`` (Qt's ``offscreen`` platform cannot render a GL view; Xvfb with Mesa's
software GL can), and on exit stops the server and restores both variables. Used by
``bgm2pose demo`` without a display, by the GUI benchmark and by the app tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

from bgm2pose.sensing.errors import UserError


class DisplayError(UserError, RuntimeError):
    """No X server could be started for drawing without a display."""


def has_display() -> bool:
    """Whether a desktop session (X11 or Wayland) is there to show windows on."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a helper server (Xvfb, jackd), killing it if it does not exit within 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def virtual_display(width: int = 1920, height: int = 1080, timeout: float = 15.0
                    ) -> Iterator[str]:
    """Run an Xvfb server for the duration of the block; yields its ``DISPLAY`` (":N")."""
    if shutil.which("Xvfb") is None:
        raise DisplayError("Xvfb is not installed, so nothing can be drawn without a display; "
                           "install it (apt-get install xvfb) or run on a desktop")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write_fd)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM")}
    try:
        number = _read_display_number(read_fd, proc, timeout)
        display = f":{number}"
        os.environ["DISPLAY"] = display
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        yield display
    finally:
        os.close(read_fd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process(proc)


def _read_display_number(fd: int, proc: subprocess.Popen, timeout: float) -> int:
    import select

    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            proc.kill()
            raise DisplayError(f"Xvfb did not start within {timeout:.0f} s; check that it "
                               "runs (Xvfb -displayfd 1) and that /tmp is writable")
        data += chunk
    return int(data.strip())
