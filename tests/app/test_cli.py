import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("bgm2pose")


def _run(*args):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_verb():
    from bgm2pose.app.cli import VERBS

    r = _run("--help")
    assert r.returncode == 0
    for verb in VERBS:
        assert verb in r.stdout


@pytest.mark.parametrize("args, phrase", [
    (["simulate", "OUT", "--shard", "3/2"], "0 <= i < n"),
    (["simulate", "OUT", "--subjects", "Nobody"], "unknown subjects"),
    (["features", "/nonexistent/session"], "not a session folder"),
])
def test_user_errors_are_one_clear_sentence_not_a_traceback(args, phrase, tmp_path):
    args = [str(tmp_path / a) if a == "OUT" else a for a in args]
    r = _run(*args)
    assert r.returncode == 2
    assert phrase in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
