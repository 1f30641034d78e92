import csv

import numpy as np
import pytest

from bgm2pose.models.ampl import COLUMNS, AmplError, read_ampl
from bgm2pose.sensing.errors import UserError

# (testee, music type, label) of the windows in the little data set, in CSV order.
WINDOWS = [
    ("subject1", "ambient1", "walk"),
    ("subject2", "ambient1", "wave"),
    ("subject1", "jazz", "squat"),
    ("subject2", "jazz", "walk"),
]


def _feature(i: int) -> np.ndarray:
    """(15, 128, 12) with a value that encodes (window, channel, mel, time) exactly."""
    c, m, t = np.meshgrid(np.arange(15), np.arange(128), np.arange(12), indexing="ij")
    return (i * 1_000_000 + c * 10_000 + m * 100 + t).astype(np.float32)


def _pose(i: int) -> np.ndarray:
    return (i * 1000 + np.arange(12 * 63).reshape(12, 63)).astype(np.float32)


def _write_csv(path, rows, columns=COLUMNS):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})


def _make(root, nan_window=None):
    """The data set under root/ampl: features and poses in subfolders; window 1's files are
    listed by absolute path, the others relative to the CSV."""
    folder = root / "ampl"
    (folder / "spec").mkdir(parents=True)
    (folder / "joint").mkdir()
    rows = []
    for i, (testee, music, label) in enumerate(WINDOWS):
        feat = _feature(i)
        if i == nan_window:
            feat[7, 3, 5] = np.nan  # intensity y, mel 3, time 5: a silent bin
        np.save(folder / "spec" / f"{i}.npy", feat)
        np.save(folder / "joint" / f"{i}.npy", _pose(i))
        prefix = f"{folder}/" if i == 1 else ""
        rows.append({
            "sound_path": f"{prefix}spec/{i}.npy", "joint_path": f"{prefix}joint/{i}.npy",
            "label": label, "testee": testee, "music_type": music,
            "spec_duration": f"{0.6 * i:.1f}",
        })
    _write_csv(folder / "index.csv", rows)
    return folder / "index.csv", rows


def test_reads_and_converts_layout_exactly(tmp_path):
    csv_path, _ = _make(tmp_path)
    w = read_ampl(csv_path)
    assert len(w) == 4
    assert w.base.shape == (4, 9, 12, 128) and w.base.dtype == np.float32
    assert w.poses.shape == (4, 12, 63) and w.poses.dtype == np.float32
    t, m = np.meshgrid(np.arange(12), np.arange(128), indexing="ij")
    # Base channel -> AMPL channel: mic 0-3 as is, music left = AMPL 5, right = AMPL 4,
    # intensity = AMPL 6-8; phases (AMPL 9-14) are gone.
    for i in range(4):
        for base_ch, ampl_ch in enumerate([0, 1, 2, 3, 5, 4, 6, 7, 8]):
            expected = i * 1_000_000 + ampl_ch * 10_000 + m * 100 + t
            np.testing.assert_array_equal(w.base[i, base_ch], expected)
        np.testing.assert_array_equal(w.poses[i], _pose(i))
    assert list(w.testee) == [testee for testee, _, _ in WINDOWS]
    assert list(w.music_type) == [music for _, music, _ in WINDOWS]
    assert list(w.label) == [label for _, _, label in WINDOWS]
    assert list(w.spec_duration) == ["0.0", "0.6", "1.2", "1.8"]


def test_relative_paths_resolve_against_the_csv_folder_not_cwd(tmp_path, monkeypatch):
    csv_path, _ = _make(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert len(read_ampl(csv_path)) == 4


def test_nan_intensity_becomes_zero(tmp_path):
    csv_path, _ = _make(tmp_path, nan_window=2)
    w = read_ampl(csv_path)
    assert w.base[2, 7, 5, 3] == 0.0  # base Iy, time 5, mel 3
    assert np.isfinite(w.base).all()
    assert w.base[2, 7, 5, 4] == 2_000_000 + 7 * 10_000 + 4 * 100 + 5


def test_filters(tmp_path):
    csv_path, _ = _make(tmp_path)
    w = read_ampl(csv_path, testees=["subject2"])
    assert list(w.testee) == ["subject2", "subject2"]
    np.testing.assert_array_equal(w.poses, np.stack([_pose(1), _pose(3)]))
    w = read_ampl(csv_path, music_types=["jazz"], testees=["subject1"])
    assert len(w) == 1 and w.label[0] == "squat"
    assert w.base[0, 0, 0, 0] == 2_000_000
    assert len(read_ampl(csv_path, testees="subject1")) == 2


def test_unknown_filter_value_lists_choices(tmp_path):
    csv_path, _ = _make(tmp_path)
    with pytest.raises(AmplError, match="no testee subject9; choose from subject1, subject2"):
        read_ampl(csv_path, testees=["subject9"])
    with pytest.raises(AmplError, match="no music type pop"):
        read_ampl(csv_path, music_types=["pop"])


def test_missing_csv(tmp_path):
    with pytest.raises(AmplError, match="index.csv does not exist"):
        read_ampl(tmp_path / "index.csv")


def test_a_folder_given_as_the_csv_is_called_a_folder(tmp_path):
    (tmp_path / "index.csv").mkdir()
    with pytest.raises(AmplError, match="index.csv is a folder, not a file; pass the file itself"):
        read_ampl(tmp_path / "index.csv")


def test_missing_columns(tmp_path):
    csv_path, rows = _make(tmp_path)
    _write_csv(csv_path, rows, columns=("sound_path", "testee", "music_type", "joint_path"))
    with pytest.raises(AmplError, match="lacks the columns label, spec_duration") as info:
        read_ampl(csv_path)
    assert isinstance(info.value, UserError)


def test_empty_csv(tmp_path):
    csv_path, _ = _make(tmp_path)
    _write_csv(csv_path, [])
    with pytest.raises(AmplError, match="lists no windows"):
        read_ampl(csv_path)


def test_missing_npy_names_row_and_file(tmp_path):
    csv_path, _ = _make(tmp_path)
    (csv_path.parent / "joint" / "2.npy").unlink()
    # Line 4 of the CSV: header, then windows 0, 1, 2.
    message = r"line 4 of index.csv: pose file .*joint/2.npy does not exist"
    with pytest.raises(AmplError, match=message):
        read_ampl(csv_path)
    # Filtering that window out avoids the missing file.
    assert len(read_ampl(csv_path, testees=["subject2"])) == 2


def test_ill_shaped_npy(tmp_path):
    csv_path, _ = _make(tmp_path)
    np.save(csv_path.parent / "spec" / "3.npy", np.zeros((15, 128, 11), np.float32))
    message = r"line 5 of index.csv: feature file .*spec/3.npy has shape \(15, 128, 11\)"
    with pytest.raises(AmplError, match=message):
        read_ampl(csv_path)


def test_not_an_npy(tmp_path):
    csv_path, _ = _make(tmp_path)
    (csv_path.parent / "spec" / "0.npy").write_text("not numpy")
    message = r"line 2 of index.csv: feature file .*spec/0.npy is not a readable"
    with pytest.raises(AmplError, match=message):
        read_ampl(csv_path)
