"""Saved calibration profiles: one TOML file per (output device, input device, sample rate).

Folder: ``platformdirs.user_config_dir("bgm2pose") / "calibration"``; the environment
variable ``BGM2POSE_CONFIG_DIR`` replaces the ``user_config_dir`` part (tests, portable
installs). A file's name is derived from its key (readable, filesystem-safe, with a short
hash so that different device names never collide); the key itself is stored inside and is
what ``load_profile`` matches. ``latency_samples`` is what the aligner uses on that device
pair: the device round trip without the acoustic flight (see ``latency``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from bgm2pose.calibration.latency import CalibrationResult
from bgm2pose.sensing.errors import UserError

CONFIG_ENV = "BGM2POSE_CONFIG_DIR"


class ProfileError(UserError, ValueError):
    """A profile file that cannot be read, or a profile that should not be saved."""


@dataclass(frozen=True)
class Profile:
    output_device: str
    input_device: str
    sample_rate: int
    latency_samples: float  # device round trip (the aligner's latency)
    created: str  # ISO 8601, UTC
    speaker_latency_samples: tuple[float, float] = (0.0, 0.0)  # device + flight, L and R
    distances_m: tuple[float, float] = (0.0, 0.0)
    snr_db: float = 0.0
    clock_ratio: float = 1.0
    convention: str = "ambix"
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_result(cls, result: CalibrationResult, output_device: str, input_device: str,
                    convention: str) -> Profile:
        return cls(output_device=output_device, input_device=input_device,
                   sample_rate=result.sample_rate,
                   latency_samples=result.device_latency_samples,
                   created=datetime.now(UTC).isoformat(timespec="seconds"),
                   speaker_latency_samples=result.latency_samples,
                   distances_m=result.distances_m, snr_db=result.snr_db,
                   clock_ratio=result.clock_ratio, convention=convention,
                   warnings=result.warnings)

    @property
    def flight_samples(self) -> float:
        """Mean acoustic flight time of the two speakers (samples)."""
        return sum(self.speaker_latency_samples) / 2 - self.latency_samples


def profile_dir() -> Path:
    import platformdirs

    base = os.environ.get(CONFIG_ENV) or platformdirs.user_config_dir("bgm2pose")
    return Path(base) / "calibration"


def _path(output_device: str, input_device: str, sample_rate: int) -> Path:
    key = f"{output_device}\n{input_device}\n{sample_rate}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{output_device}--{input_device}").strip("-")[:60]
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return profile_dir() / f"{slug}-{sample_rate}-{digest}.toml"


def save_profile(profile: Profile) -> Path:
    """Write ``profile`` (replacing the one for the same devices and rate); its path."""
    path = _path(profile.output_device, profile.input_device, profile.sample_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(profile).items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(data))
    tmp.replace(path)  # never leave a half-written profile
    return path


def _read(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text())
        known = {f.name for f in fields(Profile)}
        return Profile(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in data.items() if k in known})
    except (OSError, tomllib.TOMLDecodeError, TypeError) as exc:
        raise ProfileError(f"calibration profile {path} cannot be read ({exc}); delete it "
                           "(bgm2pose calibrate --delete) and calibrate again") from exc


def load_profile(output_device: str, input_device: str, sample_rate: int) -> Profile | None:
    """The profile saved for these devices and rate, or None."""
    path = _path(output_device, input_device, sample_rate)
    return _read(path) if path.exists() else None


def list_profiles() -> list[Profile]:
    """Every saved profile, sorted by devices and rate."""
    folder = profile_dir()
    if not folder.is_dir():
        return []
    profiles = [_read(p) for p in sorted(folder.glob("*.toml"))]
    return sorted(profiles, key=lambda p: (p.output_device, p.input_device, p.sample_rate))


def delete_profile(output_device: str, input_device: str, sample_rate: int) -> bool:
    """Delete the profile for these devices and rate; False if there was none."""
    path = _path(output_device, input_device, sample_rate)
    if not path.exists():
        return False
    path.unlink()
    return True
