import os
import shutil
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


def test_an_evaluation_report_never_overwrites_the_models_card(tmp_path):
    # evaluate --out NAME.md writes NAME.json beside it: for a model NAME.onnx, its card.
    model = tmp_path / "taught.onnx"
    from bgm2pose.models.inference import demo_model_path

    shutil.copy(demo_model_path(), model)
    shutil.copy(demo_model_path().with_suffix(".json"), model.with_suffix(".json"))
    card = model.with_suffix(".json").read_text()
    r = _run("evaluate", str(model), str(tmp_path / "data"), "--out", str(tmp_path / "taught.md"))
    assert r.returncode == 2
    assert "would overwrite the model or its card" in r.stderr and "Traceback" not in r.stderr
    assert model.with_suffix(".json").read_text() == card
    assert not (tmp_path / "taught.md").exists()


def test_simulate_renders_with_the_rig_of_a_file(tmp_path):
    from bgm2pose.sensing.session import read_session
    from bgm2pose.sensing.sim.rig import Rig

    (tmp_path / "dry.json").write_text('{"rt60": 0.2, "speaker_directivity_db": 9}')
    r = _run("simulate", str(tmp_path / "data"), "--subjects", "S1", "--tracks", "jazz-0000",
             "--minutes", "0.02", "--rig", str(tmp_path / "dry.json"))
    assert r.returncode == 0, r.stderr
    (folder,) = (tmp_path / "data").iterdir()
    assert Rig.from_dict(read_session(folder).info.rig) == Rig(rt60=0.2, speaker_directivity_db=9.0)


@pytest.mark.parametrize("text, phrase", [
    (None, "cannot read the rig file"),
    (b"\xff\xfe\x00", "is not text"),
    ('{"rt60": 0.2', "is not valid JSON"),
    ('[0.2]', "must be a JSON object"),
    ('{"reverb": 0.2}', "unknown rig settings ['reverb']"),
    ('{"rt60": 9}', "RT60 9 s is out of range"),
    ('{"rt60": "dry"}', "bad rig setting value"),
    ('{"mic": [3.5, 1.2, 9.0]}', "mic at (3.5, 1.2, 9.0) is outside the room"),
])
def test_a_bad_rig_file_is_one_clear_sentence(text, phrase, tmp_path):
    path = tmp_path / "rig.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    r = _run("simulate", str(tmp_path / "data"), "--rig", str(path))
    assert r.returncode == 2
    assert phrase in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("verb", [["run", "--fast", "--seconds", "1"],
                                  ["virtual-room", "--seconds", "1"]])
def test_run_and_the_virtual_room_refuse_a_bad_rig_file_in_one_sentence(verb, tmp_path):
    path = tmp_path / "rig.json"
    path.write_text('{"body_paths": "diagonal"}')
    r = _run(*verb, "--rig", str(path))
    assert r.returncode == 2
    assert "body paths 'diagonal' are unknown" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_learnability_report_from_a_simulated_data_set(tmp_path):
    data = tmp_path / "sim"
    r = _run("simulate", str(data), "--subjects", "S1", "S2", "S3", "--tracks", "ambient-0000",
             "--minutes", "0.1")
    assert r.returncode == 0, r.stderr
    report = tmp_path / "report.md"
    r = _run("learnability", str(data), "--mlp-epochs", "1", "--out", str(report))
    assert r.returncode == 0, r.stderr
    text = report.read_text()
    for probe in ("plain ridge", "excerpt ridge", "excerpt mlp", "channel ridge", "channel mlp"):
        assert f"| {probe} |" in text
    assert "| S1 | 10 |" in text and "| S3 | 10 |" in text  # 6 s of 0.6 s windows each
    assert "warning" not in r.stderr
    signature = text.split("## The pose's acoustic signature on this rig")[1]
    assert "S1_ambient-0000_t0" in signature
    assert signature.count("| yes |") == 4 and signature.count("| no |") == 3
    assert "Data sets compared" not in text

    # The same data on the direct-only rig, compared: one row each, named by the difference;
    # ridge probes only (--mlp-epochs 0), as a grid of large data sets runs them.
    rig = tmp_path / "direct.json"
    rig.write_text('{"body_paths": "direct"}')
    direct = tmp_path / "sim-direct"
    r = _run("simulate", str(direct), "--subjects", "S1", "S2", "S3", "--tracks",
             "ambient-0000", "--minutes", "0.1", "--rig", str(rig))
    assert r.returncode == 0, r.stderr
    r = _run("learnability", str(data), str(direct), "--mlp-epochs", "0", "--out", str(report))
    assert r.returncode == 0, r.stderr
    compared = report.read_text().split("## Data sets compared")[1].split("## Summary")[0]
    rows = [line for line in compared.splitlines() if line.startswith("| `")]
    assert len(rows) == 2 and rows[0].startswith(f"| `{data}` |")
    assert rows[1].startswith(f"| `{direct}` (body_paths direct) |")
    assert rows[0].count("|") == rows[1].count("|") == 2 + 2 * 3 + 1
    assert "mlp" not in compared and "MLP not run" in report.read_text()

    # Two subjects on a track: the excerpt probes have nothing to learn from, and say so.
    shutil.rmtree(data / "S3_ambient-0000_t0")
    r = _run("learnability", str(data), "--mlp-epochs", "1", "--out", str(report))
    assert r.returncode == 0, r.stderr
    assert "fewer than 3 subjects" in r.stderr

    r = _run("learnability", str(data), "--mlp-epochs", "-1")
    assert r.returncode == 2 and "--mlp-epochs -1 must be 0 (ridge probes only) or more" in r.stderr
    assert "Traceback" not in r.stderr


def test_simulate_with_music_files_renders_each_file_as_a_track_named_after_it(tmp_path):
    import numpy as np
    import soundfile as sf

    from bgm2pose.sensing.audiofile import read_music
    from bgm2pose.sensing.session import read_session

    mono = tmp_path / "morning song.wav"  # mono at 44.1 kHz: resampled, both speakers
    sf.write(mono, 0.3 * np.sin(np.arange(22_050) * 0.05), 44_100)
    stereo = tmp_path / "dusk.flac"
    t = np.arange(38_400)
    sf.write(stereo, np.c_[0.3 * np.sin(t * 0.03), 0.2 * np.sin(t * 0.07)], 48_000)
    r = _run("simulate", str(tmp_path / "data"), "--subjects", "S1", "--music", str(mono),
             str(stereo))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "S1_dusk_t0", "S1_morning song_t0"]
    dusk = read_session(tmp_path / "data" / "S1_dusk_t0")
    assert dusk.info.track == "dusk" and dusk.info.provenance["music_file"] == str(stereo)
    np.testing.assert_allclose(dusk.reference, sf.read(stereo, dtype="float32")[0].T,
                               atol=2.0 ** -22)  # the whole 0.8 s: each file's own length
    song = read_session(tmp_path / "data" / "S1_morning song_t0")
    assert song.reference.shape == (2, 24_000) and len(song.poses) == 60
    np.testing.assert_allclose(song.reference, read_music(mono), atol=2.0 ** -22)

    # --minutes takes the first minutes of a longer file, and leaves a shorter one whole.
    r = _run("simulate", str(tmp_path / "short"), "--subjects", "S2", "--minutes", "0.01",
             "--music", str(mono), str(stereo))
    assert r.returncode == 0, r.stderr
    assert read_session(tmp_path / "short" / "S2_dusk_t0").reference.shape == (2, 28_800)
    assert read_session(tmp_path / "short" / "S2_morning song_t0").reference.shape == (2, 24_000)


def test_simulate_names_each_bad_music_file_and_writes_nothing(bad_music, tmp_path):
    other = Path(bad_music.path).with_name("other.wav")
    other.write_bytes(b"")  # a second bad file: both are named, one sentence each
    out = tmp_path / "data"
    r = subprocess.run([*bad_music.as_user, str(BIN), "simulate", str(out), "--music",
                        str(other), bad_music.path], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, **bad_music.env))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in r.stderr, r.stderr
    assert "other.wav is empty" in lines[0]
    assert bad_music.phrase in lines[1] and Path(bad_music.path).name in lines[1]
    assert not out.exists()
