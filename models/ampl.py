"""Reader for the published AMPL preprocessed data set, converted to the project's layout.

AMPL layout: a CSV with columns sound_path, label, testee, music_type, spec_duration,
joint_path; one row per 0.6 s window. ``sound_path`` is a (15, 128, 12) float32 .npy of
[log-mel W, X, Y, Z, music_right, music_left; intensity x, y, z; 6 phases] x mel x time,
``joint_path`` a (12, 63) float32 .npy of poses, stored as published (not re-normalised
here). Paths are absolute or relative to the CSV's folder.

Project "base feature" layout (the one sessions produce too): (B, 9, 12, 128) float32,
channels W, X, Y, Z, music_left, music_right, Ix, Iy, Iz in (channel, time, mel) order.
So the reader swaps the music channels to left, right, drops the phases, puts time before
mel, and maps NaN intensity (the published code's silent bins, divided by a zero norm) to 0
as the project's own features do.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from bgm2pose.sensing.errors import UserError, require_file

COLUMNS: tuple[str, ...] = (
    "sound_path", "label", "testee", "music_type", "spec_duration", "joint_path",
)
FEATURE_SHAPE = (15, 128, 12)
POSE_SHAPE = (12, 63)
# AMPL channel for each base channel: W, X, Y, Z, music_left (AMPL 5), music_right (AMPL 4),
# then the three intensity channels.
_BASE_FROM_AMPL = (0, 1, 2, 3, 5, 4, 6, 7, 8)
_INTENSITY = slice(6, 9)


class AmplError(UserError, ValueError):
    """An AMPL CSV or one of its .npy files that cannot be read."""


@dataclass
class AmplWindows:
    base: np.ndarray  # (B, 9, 12, 128) float32 base features
    poses: np.ndarray  # (B, 12, 63) float32, as stored in the data set
    testee: np.ndarray  # (B,) str
    music_type: np.ndarray  # (B,) str
    label: np.ndarray  # (B,) str
    spec_duration: np.ndarray  # (B,) str, as written in the CSV

    def __len__(self) -> int:
        return len(self.base)


def _rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row of the CSV."""
    require_file(csv_path, "AMPL index", "pass the data set's CSV file", AmplError)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AmplError(
                f"AMPL index {csv_path} lacks the columns {', '.join(missing)} (found: "
                f"{', '.join(reader.fieldnames or []) or 'none'}); pass the preprocessed "
                "data set's CSV"
            )
        return [(reader.line_num, row) for row in reader]


def _check_filter(
    name: str, wanted: Iterable[str] | None, present: set[str], csv_path: Path
) -> set[str] | None:
    if wanted is None:
        return None
    wanted = {str(w) for w in ([wanted] if isinstance(wanted, str) else wanted)}
    unknown = wanted - present
    if unknown:
        raise AmplError(
            f"AMPL index {csv_path} has no {name} {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(sorted(present))}"
        )
    return wanted


def _load(
    path_text: str, shape: tuple[int, ...], what: str, where: str, folder: Path
) -> np.ndarray:
    path = Path(path_text)
    if not path.is_absolute():
        path = folder / path
    require_file(path, f"{where}: {what} file", "fix the path in the CSV", AmplError)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise AmplError(f"{where}: {what} file {path} is not a readable .npy array; "
                        "re-extract it from the data set") from exc
    if array.shape != shape:
        raise AmplError(f"{where}: {what} file {path} has shape {array.shape}, expected {shape}; "
                        "check that the CSV columns point at the right files")
    return array


def read_ampl(
    csv_path: str | Path,
    *,
    testees: Iterable[str] | None = None,
    music_types: Iterable[str] | None = None,
) -> AmplWindows:
    """All windows of an AMPL CSV, optionally only those of ``testees`` / ``music_types``,
    in CSV order, converted to base features."""
    csv_path = Path(csv_path)
    rows = _rows(csv_path)
    if not rows:
        raise AmplError(f"AMPL index {csv_path} lists no windows; pass a non-empty CSV")
    keep_testees = _check_filter("testee", testees, {r["testee"] for _, r in rows}, csv_path)
    keep_music = _check_filter(
        "music type", music_types, {r["music_type"] for _, r in rows}, csv_path
    )
    rows = [
        (line, r) for line, r in rows
        if (keep_testees is None or r["testee"] in keep_testees)
        and (keep_music is None or r["music_type"] in keep_music)
    ]
    if not rows:
        raise AmplError(
            f"AMPL index {csv_path} has no window of the chosen testees and music types "
            "together; widen the selection"
        )

    # Filled in place: the full data set is several GB, so no list-then-stack copy.
    base = np.empty((len(rows), 9, POSE_SHAPE[0], FEATURE_SHAPE[1]), np.float32)
    poses = np.empty((len(rows), *POSE_SHAPE), np.float32)
    for i, (line, row) in enumerate(rows):
        where = f"line {line} of {csv_path.name}"
        feat = _load(row["sound_path"], FEATURE_SHAPE, "feature", where, csv_path.parent)
        base[i] = feat[list(_BASE_FROM_AMPL)].transpose(0, 2, 1)
        poses[i] = _load(row["joint_path"], POSE_SHAPE, "pose", where, csv_path.parent)
    intensity = base[:, _INTENSITY]
    intensity[np.isnan(intensity)] = 0.0

    def column(name: str) -> np.ndarray:
        return np.array([r[name] for _, r in rows], dtype=str)

    return AmplWindows(
        base=base, poses=poses, testee=column("testee"), music_type=column("music_type"),
        label=column("label"), spec_duration=column("spec_duration"),
    )
