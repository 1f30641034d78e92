"""`bgm2pose run` as a user runs it (a subprocess): JSON lines, the summary, and the duplex path
through a real JACK server into the virtual room, compared with the in-process virtual rig."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bgm2pose.models.inference import PoseModel
from bgm2pose.sensing.skeleton import normalise
from bgm2pose.models.windows import window_poses
from bgm2pose.sensing.features import window_features
from bgm2pose.sensing.jack_log import late_clients
from bgm2pose.sensing.session import read_session
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig
from scipy.signal import correlate

FS = 48_000
HOP = 2_400
WINDOW = 28_800


def env() -> dict[str, str]:
    """The environment now (the JACK fixture sets JACK_DEFAULT_SERVER), one BLAS thread."""
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def run_cli(*args: str, timeout: float = 240) -> tuple[int, dict[str, str], str]:
    """Run `bgm2pose run ARGS`; returns (exit code, summary table as a dict, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "bgm2pose.app.cli", "run", "--quiet", *args],
                          capture_output=True, text=True, timeout=timeout, env=env())
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1)
                for line in proc.stderr.splitlines() if re.search(r"\S\s{2,}\S", line))
    return proc.returncode, rows, proc.stderr


def captured_samples(rows: dict[str, str]) -> int:
    return int(re.search(r"\((\d+) samples\)", rows["captured audio"]).group(1))


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def json_mae(lines: list[dict], truth: np.ndarray) -> float:
    return float(np.mean(np.abs(np.array([r["pose"] for r in lines]) - truth)))


def test_json_lines_hold_each_frame_once_in_capture_order(standin_model, tmp_path):
    out = tmp_path / "poses.jsonl"
    code, rows, err = run_cli("--fast", "--seconds", "2.5", "--model", str(standin_model),
                              "--json-lines", str(out))
    assert code == 0, err
    lines = read_lines(out)
    windows = int(rows["windows estimated"])
    assert windows == (captured_samples(rows) // HOP * HOP - WINDOW) // HOP + 1
    assert int(rows["windows dropped"]) == 0 and rows["backend"] == "virtual rig"
    # The first window gives its 12 frames, every later one its newest frame.
    assert len(lines) == 11 + windows
    t = np.array([r["t"] for r in lines])
    assert np.all(np.diff(t) > 0) and t[0] == 0.0
    later = lines[12:]
    np.testing.assert_allclose([r["t"] for r in later],
                               [r["capture_time"] - 1 / 120 for r in later], atol=1e-6)
    np.testing.assert_allclose(np.diff([r["capture_time"] for r in later]), HOP / FS)
    for r in lines:
        assert set(r) == {"seq", "t", "capture_time", "pose", "truth"}
        assert np.shape(r["pose"]) == np.shape(r["truth"]) == (21, 3)
    # The truth is normalised: hips at the origin, hip-spine length 1.
    truth = np.array([r["truth"] for r in lines])
    np.testing.assert_allclose(truth[:, 0, [0, 2]], 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(truth[:, 1] - truth[:, 0], axis=-1), 1, atol=1e-4)
    # Live MAE in the summary pools every window's 12 poses, the lines each frame once.
    assert float(rows["MAE (normalised)"]) == pytest.approx(json_mae(lines, truth), rel=0.05)


def test_the_rig_of_a_rig_file_is_the_one_run_and_recorded(standin_model, tmp_path, direct_rig):
    code, rows, err = run_cli("--fast", "--seconds", "1", "--model", str(standin_model),
                              "--rig", str(direct_rig), "--record", str(tmp_path / "session"))
    assert code == 0, err
    assert read_session(tmp_path / "session").info.rig["body_paths"] == "direct"


# ---------------------------------------------------------------- through JACK


def duplex_take(virtual_room, model: Path, folder: Path, rig: Path
                ) -> tuple[int, dict, str, Path, Path]:
    tape = folder / "room.npz"
    lines = folder / "duplex.jsonl"
    with virtual_room("--tape", str(tape), "--tape-seconds", "40", "--rig", str(rig)) as (
            ready, stopped):
        latency = ready["delay_samples"] + 2 * ready["period"]  # see virtual_room's docstring
        code, rows, err = run_cli("--backend", "duplex", "--device", "room", "--convention",
                                  "internal", "--latency", str(latency), "--seconds", "20",
                                  "--model", str(model), "--json-lines", str(lines),
                                  "--record", str(folder / "session"))
    assert stopped.get("error") is None, stopped
    return code, rows, err, tape, lines


def test_duplex_run_through_jack_estimates_every_window_like_the_in_process_rig(
        virtual_room, standin_model, tmp_path, direct_rig, jack_log):
    # A loaded shared machine may xrun. The run must say so (xruns counted, the windows they
    # touch flagged, not estimated); every other window must be what a clean run gives. A
    # take that lost more than a quarter of its windows is taken again, and jackd's log says
    # whose doing it was.
    for attempt in range(3):
        folder = tmp_path / f"take{attempt}"
        folder.mkdir()
        logged = len(jack_log.read_text())
        code, rows, err, tape_path, lines_path = duplex_take(virtual_room, standin_model,
                                                             folder, direct_rig)
        assert code == 0, err
        late = dict(late_clients(jack_log.read_text()[logged:]))
        xruns, flagged = int(rows["xruns"]), int(rows["windows flagged"])
        print(f"\nattempt {attempt}: {xruns} xruns (late: {late}), {flagged} flagged windows")
        assert flagged == 0 or xruns > 0, err  # windows are flagged for xruns only
        if flagged <= int(rows["windows estimated"]) // 3:
            break
    captured = captured_samples(rows)
    latency = float(rows["latency"].split()[0])
    assert captured >= 20 * FS
    # Every window from the first whose music was played (the ones before pair with reference
    # samples before playback began: unavailable, counted as dropped) to the last complete.
    first_end = -(-(WINDOW + round(latency)) // HOP) * HOP
    windows = (captured // HOP * HOP - first_end) // HOP + 1
    # Windows before the first are unavailable; a worker the load held back skips some more
    # (the summary counts both as dropped; they are never estimated late).
    behind = int(rows["windows dropped"]) - (first_end - WINDOW) // HOP
    assert 0 <= behind <= windows // 10
    assert int(rows["windows estimated"]) + flagged + behind == windows
    assert flagged <= windows // 4, f"xruns spoilt every take, the last late: {late}\n{err}"
    assert "MAE (normalised)" not in rows  # a real device: no ground truth in the run

    # Ground truth offline: the room's poses at the run's recorded times. Recorded sample n
    # pairs with reference n - latency, which the room heard (and rendered, with pose frame
    # f at rendered sample 400 f) at room sample n - latency + offset.
    tape = np.load(tape_path)
    heard, poses = tape["input"], tape["poses"]
    reference, _ = sf.read(folder / "session" / "reference.flac", dtype="float32")
    reference = reference.T
    probe = reference[0, 5 * FS:6 * FS]
    offset = int(np.argmax(correlate(heard[0], probe, mode="valid", method="fft"))) - 5 * FS
    # What the room heard is, second by second, what the reference says was played, except
    # where an xrun (one period each, so within at most two seconds) lost it; a period the
    # late room never heard moves what it heard later by that period.
    period = int(tape["period"])
    shifts = range(-xruns * period, xruns * period + 1, period)

    def heard_as_played(k):
        return any(np.allclose(heard[:, offset + d + k * FS:offset + d + (k + 1) * FS],
                               reference[:, k * FS:(k + 1) * FS], rtol=0, atol=2.0 ** -23)
                   for d in shifts)

    unequal = [k for k in range(1, 15) if not heard_as_played(k)]
    assert len(unequal) <= 2 * xruns, unequal
    lines = read_lines(lines_path)
    # The live poses are the model's on the recording's aligned windows (every 25th line:
    # each window's newest frame, or after a flagged window an older one it fills in with).
    session = read_session(folder / "session")
    model = PoseModel(standin_model)
    shift = round(session.info.latency_samples)
    checked = 0
    for r in lines[12::25]:
        end = round(r["capture_time"] * FS)
        base = window_features(session.mic[:, end - WINDOW:end],
                               session.reference[:, end - WINDOW - shift:end - shift])
        older = (r["capture_time"] - 1 / 120 - r["t"]) * FS / HOP
        if abs(older - round(older)) > 1e-3:
            continue  # a fill-in between two of the window's poses: interpolated, not one
        np.testing.assert_allclose(r["pose"], model.predict(base)[-1 - round(older)], atol=1e-4)
        checked += 1
    assert checked >= len(lines[12::25]) // 2
    frame = (np.array([r["t"] for r in lines]) * FS - latency + offset) / 400
    truth = normalise(window_poses(poses, frame, 1)[:, 0])
    duplex_mae = json_mae(lines, truth)

    # The same scene, seed and rig in process, measured the same way.
    virtual_lines = tmp_path / "virtual.jsonl"
    code, virtual_rows, err = run_cli("--fast", "--seconds", "20", "--model",
                                      str(standin_model), "--rig", str(direct_rig),
                                      "--json-lines", str(virtual_lines))
    assert code == 0, err
    vlines = read_lines(virtual_lines)
    virtual_mae = json_mae(vlines, np.array([r["truth"] for r in vlines]))
    print(f"\nduplex MAE {duplex_mae:.4f} ({len(lines)} frames), in-process MAE "
          f"{virtual_mae:.4f} (live {virtual_rows['MAE (normalised)']}), room offset "
          f"{offset} samples")
    assert abs(duplex_mae - virtual_mae) <= 0.1 * virtual_mae


def test_split_streams_through_jack_record_and_estimate_like_one_duplex_stream(
        virtual_room, standin_model, tmp_path, direct_rig):
    # Two rtmixer streams (a recorder on the room's outputs, a mixer on its inputs) on one
    # JACK clock: every window is estimated or flagged for an xrun, and the recording pairs
    # with the reference at the room's loopback latency, as through one duplex stream.
    with virtual_room("--rig", str(direct_rig)) as (ready, stopped):
        latency = ready["delay_samples"] + 2 * ready["period"]
        code, rows, err = run_cli("--backend", "split", "--output-device", "room",
                                  "--input-device", "room", "--convention", "internal",
                                  "--latency", str(latency), "--seconds", "8", "--model",
                                  str(standin_model), "--record", str(tmp_path / "session"))
    assert code == 0, err
    assert rows["backend"] == "room -> room"
    captured = captured_samples(rows)
    assert captured >= 8 * FS
    flagged = int(rows["windows flagged"])
    assert flagged == 0 or int(rows["xruns"]) > 0
    first_end = -(-(WINDOW + latency) // HOP) * HOP
    windows = (captured // HOP * HOP - first_end) // HOP + 1
    behind = int(rows["windows dropped"]) - (first_end - WINDOW) // HOP  # as in the duplex test
    assert 0 <= behind <= windows // 10
    assert int(rows["windows estimated"]) + flagged + behind == windows
    session = read_session(tmp_path / "session")
    w, music = session.mic[0, 3 * FS:6 * FS], session.reference[0, 2 * FS:6 * FS]
    lag = FS - int(np.argmax(correlate(music, w, mode="valid", method="fft")))
    # The music reaches W after the latency and its flight (426 samples on this rig): two
    # streams started a period apart would put the peak 512 samples off.
    flight = np.linalg.norm(Rig().speakers[0] - Rig().mic_position) / SPEED_OF_SOUND * FS
    assert abs(lag - latency - flight) < 64, (lag, latency, flight)


# ---------------------------------------------------------------- music that cannot be played


def test_music_that_cannot_be_played_is_one_sentence_and_a_nonzero_exit(bad_music, tmp_path):
    session = tmp_path / "session"
    proc = subprocess.run([*bad_music.as_user, sys.executable, "-m", "bgm2pose.app.cli", "run",
                           "--quiet", "--fast", "--seconds", "1", "--tracks", bad_music.path,
                           "--record", str(session)],
                          capture_output=True, text=True, timeout=240,
                          env=dict(env(), **bad_music.env))
    assert proc.returncode == 2, proc.stderr
    assert bad_music.phrase in proc.stderr and Path(bad_music.path).name in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not session.exists()  # nothing was recorded, not even an empty folder


def test_a_bad_track_beside_good_ones_is_skipped_with_a_warning_and_not_recorded(
        standin_model, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, 0.3 * np.sin(np.arange(3 * FS) * 0.05), FS)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"")
    code, rows, err = run_cli("--fast", "--seconds", "1", "--model", str(standin_model),
                              "--tracks", str(bad), str(good), "--record",
                              str(tmp_path / "session"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "bad.flac is empty" in warnings[0]
    assert "skipped" in warnings[0]
    assert read_session(tmp_path / "session").info.track == "good.wav"


# ---------------------------------------------------------------- a recording that is lost


def test_a_recording_the_disk_refuses_ends_in_its_sentence_and_a_nonzero_exit(standin_model,
                                                                               tmp_path):
    session = tmp_path / "session"
    limit = 200_000  # bytes per file: the first second of mic audio does not fit
    proc = subprocess.run(
        [sys.executable, "-m", "bgm2pose.app.cli", "run", "--quiet", "--fast", "--seconds", "2",
         "--model", str(standin_model), "--record", str(session)],
        capture_output=True, text=True, timeout=240, env=env(),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"bgm2pose run: the recording into {session} stopped after 0.0 s because the disk "
        "refused a write, so the rest of the run was not recorded; free space on that disk (or "
        "raise the file-size limit), or record to another folder")
    assert "Traceback" not in proc.stderr and "recorded 0.0 s" not in proc.stderr
