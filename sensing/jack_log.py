"""Who made each xrun late, from a JACK server's log (jackd2, as ``jackd ... > log`` writes it).

For every xrun jackd logs the clients that had not finished their cycle, each with its state,
then ``ProcessGraphAsyncMaster: Process error``. The client ``Running`` was late; the ones
``Triggered`` were waiting behind it. With no client running, none was even woken in time:
the machine (or the server) was late. A PortAudio stream is the client ``PortAudio`` (which
is bgm2pose's duplex stream when nothing else in the graph uses PortAudio).

The log has no times, so a knock-on cannot be told apart: after the machine stalled, a
client woken late can be the one running when the next cycle ends (seen for rtmixer's
callback, which takes microseconds, right after xruns with no client running).
"""

from __future__ import annotations

import re
from collections import Counter

PORTAUDIO = "PortAudio"
NO_CLIENT_RAN = "no client ran (machine or server late)"
# "JackEngine::XRun: client = room was not finished, state = Running"
_LATE = re.compile(r"XRun: client = (\S+) was not finished, state = (\w+)")
_END_OF_XRUN = "Process error"


def late_clients(log: str) -> Counter:
    """Xruns by the client that was late (``NO_CLIENT_RAN`` when none ran)."""
    xruns: Counter = Counter()
    running: list[str] = []
    for line in log.splitlines():
        if match := _LATE.search(line):
            if match.group(2) == "Running":
                running.append(match.group(1))
        elif _END_OF_XRUN in line:
            xruns.update(running or [NO_CLIENT_RAN])
            running = []
    return xruns
