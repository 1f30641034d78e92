"""Calibration profiles: saved per (output, input, rate) in the config folder, found again,
listed, deleted; a damaged file is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from bgm2pose.calibration.latency import CalibrationResult
from bgm2pose.calibration.profiles import (CONFIG_ENV, Profile, ProfileError, delete_profile,
                                           list_profiles, load_profile, profile_dir,
                                           save_profile)


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path))
    return tmp_path


def result(device: float) -> CalibrationResult:
    return CalibrationResult(latency_samples=(device + 425.5, device + 426.5),
                             device_latency_samples=device, distances_m=(3.04, 3.05),
                             snr_db=70.0, impulse_responses=np.zeros((2, 4, 8), np.float32),
                             sample_rate=48_000, warnings=("check the mic",))


def test_profiles_round_trip_per_device_pair_and_rate(config):
    a = Profile.from_result(result(7168.25), "room", "room", "ambix")
    b = Profile.from_result(result(100.0), "USB: out/1", "Mic [4ch]", "fuma")
    path = save_profile(a)
    save_profile(b)
    assert path.parent == profile_dir() and str(path).startswith(str(config))
    assert load_profile("room", "room", 48_000) == a
    assert load_profile("USB: out/1", "Mic [4ch]", 48_000) == b
    assert load_profile("room", "room", 44_100) is None
    assert a.flight_samples == pytest.approx(426.0) and a.warnings == ("check the mic",)
    assert [p.output_device for p in list_profiles()] == ["USB: out/1", "room"]
    save_profile(Profile.from_result(result(7000.0), "room", "room", "ambix"))  # replaces
    assert load_profile("room", "room", 48_000).latency_samples == 7000.0
    assert len(list_profiles()) == 2
    assert delete_profile("room", "room", 48_000) and not delete_profile("room", "room", 48_000)
    assert list_profiles() == [b]


def test_a_damaged_profile_names_the_fix():
    path = save_profile(Profile.from_result(result(1.0), "o", "i", "ambix"))
    path.write_text("latency_samples = [broken")
    with pytest.raises(ProfileError, match="cannot be read.*calibrate again"):
        load_profile("o", "i", 48_000)
