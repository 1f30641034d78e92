"""``bgm2pose benchmark`` end to end on a tiny data set (3 subjects x 2 tracks of 3 s, a tiny
network, at most 2 epochs): the plan and progress it prints, the report with every row's
epochs and stop reason, a shard killed mid-way resumes to the uninterrupted results without
redoing finished jobs, and shards merge to the unsharded report. Two grids in all (the
uninterrupted one, and the shards, one of them killed), to keep the module near a minute."""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bgm2pose.app.benchmark_cmd import _print_plan
from bgm2pose.app.cli import main
from bgm2pose.models.data import load_windows
from bgm2pose.models.grid import RUNS, read_log
from bgm2pose.models.networks import PRESETS
from bgm2pose.models.protocol import CONTROLS, ROWS, Budget, make_plan
from bgm2pose.sensing.session import SessionInfo, write_session
from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion

torch.set_num_threads(1)
SR = 48_000
SECONDS = 3.0  # 5 windows per session
TRACKS = ("ambient-0000", "jazz-0000")  # settings (a) and (c)
# The cpu preset's topology at small widths, so a job takes a fraction of a second.
TINY = {"branch_widths": (8, 16), "block_widths": (16, 16, 16), "trunk_width": 32, "baseline_width": 32}
OPTIONS = ["--quick", "--epochs", "2", "--patience", "1", "--batch-size", "4"]
JOBS = 12 + 8  # every row in (a); no ablations in (c)
# Imported by every Python process started with this folder on PYTHONPATH, the benchmark's
# spawned workers included, so they all train the tiny network.
SITECUSTOMIZE = f"""
from dataclasses import replace
from bgm2pose.models.networks import PRESETS
PRESETS["cpu"] = replace(PRESETS["cpu"], **{TINY!r})
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Noise "recordings" with real motion; S3 is the quick fold's test subject."""
    root = tmp_path_factory.mktemp("data")
    n = int(SECONDS * SR)
    for ti, track in enumerate(TRACKS):
        music = 0.1 * np.random.default_rng(ti).standard_normal((2, n)).astype(np.float32)
        for si, subject in enumerate(SUBJECTS[:3]):
            mic = 0.1 * np.random.default_rng(10 * ti + si).standard_normal((4, n)).astype(np.float32)
            write_session(root / f"{subject.name}_{track}", SessionInfo(subject={"name": subject.name}, track=track),
                          mic, music, generate_motion(subject, SECONDS, seed=si))
    return root


@pytest.fixture(scope="module")
def tiny_preset():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "cpu", replace(PRESETS["cpu"], **TINY))
        yield


def _benchmark(data: Path, out: Path, *extra: str) -> tuple[int, str]:
    """(exit code, stdout) of the benchmark in this process, one worker."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["benchmark", str(data), "--out", str(out), *OPTIONS, "--workers", "1", *extra])
    return code, stdout.getvalue()


@pytest.fixture(scope="module")
def uninterrupted(dataset, tiny_preset, tmp_path_factory):
    """(out folder, stdout) of the quick grid run in one go."""
    out = tmp_path_factory.mktemp("uninterrupted")
    code, stdout = _benchmark(dataset, out)
    assert code == 0, stdout
    return out, stdout


def _outcomes(out: Path) -> dict[str, dict]:
    """Each job's metrics and training, without the times, by job key."""
    outcomes = {}
    for path in (out / RUNS).glob("*.json"):
        r = json.loads(path.read_text())
        training = r["training"] and {k: v for k, v in r["training"].items() if k != "wall_seconds"}
        outcomes[r["key"]] = {"metrics": r["metrics"], "training": training, "examples": r["examples"]}
    return outcomes


def _tables(readme: Path) -> str:
    """The report from "What this shows" to the figures: all that the numbers decide."""
    text = readme.read_text()
    return text[text.index("## What this shows"):text.index("## Figures")]


def test_the_plan_and_the_progress_are_printed(dataset, uninterrupted, capsys):
    _, stdout = uninterrupted
    assert f"benchmark: {JOBS} jobs: settings a, c x held-out S3 x seeds 0" in stdout
    assert f"0 finished earlier, {JOBS} to run" in stdout and "at most 2 epochs, stop after 1" in stdout
    assert re.search(r"a_S3_s0_jiang +fit 5, validation 5, test 5 windows: at most \d+\.\d min", stdout)
    assert re.search(r"c_S3_s0_mean-pose +fit 5, validation 5, test 5 windows: no training", stdout)
    assert re.search(r"of training, \d:\d\d:\d\d of wall time on 1 workers", stdout)
    finished = re.findall(rf"benchmark \[(\d+)/{JOBS}\] elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d: (\S+): MAE", stdout)
    assert [int(n) for n, _ in finished] == list(range(1, JOBS + 1)) and len({k for _, k in finished}) == JOBS
    assert re.search(r"a_S3_s0_bgm2pose: MAE \d\.\d+ \(mean pose \d\.\d+\), \d epochs, (plateau|cap)", stdout)
    assert "more than 3 h" not in stdout
    # A plan longer than 3 h says so before it starts.
    windows = load_windows(dataset, progress=False)
    plan = make_plan(windows, ["S3"], [0], Budget())
    _print_plan(windows, plan, plan.jobs, plan.jobs[:2], {j.key: 4 * 3600.0 for j in plan.jobs[:2]}, 2,
                finished=[{"training": {"epochs_run": 3}}, {"training": None}])
    printed = capsys.readouterr().out
    assert "4:00:00 of wall time on 2 workers" in printed and "more than 3 h at the cap" in printed
    # With finished runs, also what the rest take if they stop as those did (3 of 30 epochs).
    assert "if they stop as the 1 finished runs did (after 3.0 epochs on average), about 0:24:00" in printed


def test_the_report_gives_each_rows_epochs_and_stop_reason(uninterrupted):
    out, _ = uninterrupted
    text = (out / "README.md").read_text()
    table1 = text[text.index("## Table 1"):text.index("## Table 2")]
    assert "| epochs, stop (a / c) |" in table1
    for row in ROWS:
        if row.group != "ablation":
            line = next(x for x in table1.splitlines() if x.startswith(f"| {row.label} |"))
            stops = line.rsplit("|", 2)[1].strip()
            pattern = r"– / –" if row.method is None else r"\d (plateau|cap) / \d (plateau|cap)"
            assert re.fullmatch(pattern, stops), line
    assert "| w/o FA |" in text and "epochs, stop (a) |" in text
    for label, definition in CONTROLS.items():
        assert f"- **{label}**: {definition}" in text
    assert "## What this shows" in text and "lowest MAE **" in text and "- One run per cell" in text
    assert re.search(r"Wall time of the run: \*\*\d:\d\d:\d\d\*\* over 1 invocation", text)
    assert "one rig for all 6 sessions" in text and "Command: `bgm2pose benchmark " in text
    for s in "ac":
        for figure in ("learning", "pckh", "skeletons"):
            assert f"]({figure}_{s}.png)" in text
            assert (out / f"{figure}_{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _checkpoints(out: Path) -> list[Path]:
    return list((out / RUNS).glob("*/checkpoint.pt"))


def _killed(data: Path, out: Path, site: Path, *extra: str) -> set[int]:
    """Start the benchmark with 2 workers in a process of its own and SIGKILL it as soon as a
    job has saved the checkpoint of its first epoch; returns its worker processes."""
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    with open(site / "log.txt", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bgm2pose.app.cli", "benchmark", str(data), "--out", str(out),
                                 *OPTIONS, "--workers", "2", *extra], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not _checkpoints(out):
            assert proc.poll() is None and time.monotonic() < deadline, (site / "log.txt").read_text()
            time.sleep(0.005)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return workers


@pytest.fixture(scope="module")
def shards(dataset, tiny_preset, tmp_path_factory):
    """The two halves of the grid in two folders: shard 0/2 killed in the middle of a job and
    run again, shard 1/2 in one go. Returns (folders, what the kill left and the stdouts)."""
    folders = [tmp_path_factory.mktemp("shard0"), tmp_path_factory.mktemp("shard1")]
    workers = _killed(dataset, folders[0], tmp_path_factory.mktemp("site"), "--shard", "0/2")
    killed = {"workers": workers, "checkpoints": _checkpoints(folders[0]),
              "mtimes": {p.name: p.stat().st_mtime_ns for p in (folders[0] / RUNS).glob("*.json")}}
    stdout = {}
    for i, out in enumerate(folders):
        code, stdout[i] = _benchmark(dataset, out, "--shard", f"{i}/2")
        assert code == 0, stdout[i]
    return folders, {**killed, "stdout": stdout}


def test_a_killed_shard_resumes_to_the_uninterrupted_results(uninterrupted, shards):
    full_out, _ = uninterrupted
    (shard, _), killed = shards
    assert killed["checkpoints"]  # a job was killed mid-way
    deadline = time.monotonic() + 20  # the workers die with the benchmark
    while any(_alive(pid) for pid in killed["workers"]):
        assert time.monotonic() < deadline, "a worker outlived the killed benchmark"
        time.sleep(0.05)
    saved = len(killed["mtimes"])
    stdout = killed["stdout"][0]
    assert f"{saved} finished earlier, {JOBS // 2 - saved} to run" in stdout
    mtimes = {p.name: p.stat().st_mtime_ns for p in (shard / RUNS).glob("*.json")}
    assert {name: mtimes[name] for name in killed["mtimes"]} == killed["mtimes"]  # not run again
    assert [entry["jobs"] for entry in read_log(shard)][-1] == JOBS // 2 - saved
    full = _outcomes(full_out)
    assert _outcomes(shard) == {key: full[key] for key in _outcomes(shard)}
    assert len(_outcomes(shard)) == JOBS // 2
    assert not [p for p in (shard / RUNS).iterdir() if p.is_dir()]  # no checkpoints left behind


def test_shards_merge_to_the_unsharded_report(dataset, uninterrupted, shards, tmp_path, capsys):
    full_out, _ = uninterrupted
    folders, killed = shards
    for i, out in enumerate(folders):
        assert f"shard {i}/2 done; {JOBS // 2} of {JOBS} results are in" in killed["stdout"][i]
        assert not (out / "README.md").exists()
    # Merging needs every shard.
    assert _benchmark(dataset, tmp_path / "merged", "--merge", str(folders[0]))[0] == 2
    err = capsys.readouterr().err
    assert f"error: {JOBS // 2} of the plan's {JOBS} jobs have no result in" in err and "Traceback" not in err
    code, stdout = _benchmark(dataset, tmp_path / "merged", "--merge", *map(str, folders))
    assert code == 0 and f"merged {JOBS // 2} results from 2 folders" in stdout
    assert _outcomes(tmp_path / "merged") == _outcomes(full_out)
    assert _tables(tmp_path / "merged" / "README.md") == _tables(full_out / "README.md")
    # Every invocation that finished a job counts towards the wall time.
    invocations = 1 + len(read_log(folders[0]))
    assert f"over {invocations} invocation" in (tmp_path / "merged" / "README.md").read_text()
    # Shards sharing one --out: the one that completes the set writes the report.
    shutil.copytree(folders[1] / RUNS, folders[0] / RUNS, dirs_exist_ok=True)
    code, stdout = _benchmark(dataset, folders[0], "--shard", "1/2")
    assert code == 0 and "0 to run" in stdout
    assert _tables(folders[0] / "README.md") == _tables(full_out / "README.md")


@pytest.mark.parametrize("extra, phrase", [
    (["--shard", "2/2"], "shard '2/2' needs 0 <= i < n."),
    (["--merge", "nowhere"], "nowhere holds no runs folder; point --merge at the --out folders of the shards."),
    (["--folds", "S9"], "fold subjects ['S9'] are not in the data set"),
])
def test_bad_options_are_one_sentence(dataset, tiny_preset, tmp_path, capsys, extra, phrase):
    assert _benchmark(dataset, tmp_path / "out", *extra)[0] == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and phrase in err.splitlines()[-1]
