"""Training windows from session folders: aligned 0.6 s feature windows (the paper's base
features and the channel features, ``sensing.channel``, of the same frames) and their 12 poses.

Alignment: mic sample n pairs with reference sample n - latency (the session's latency,
rounded to a whole sample here; sub-sample latency only shifts phase by < 1/2 sample,
which the 50 ms frames do not resolve); mic and reference of different lengths are cut to the
span both cover, with an ``InputWarning`` naming both lengths. Poses: the 72 pose rows (120 fps) of a window are
linearly interpolated to 12 evenly spaced samples from the window's first row to its last
(REFERENCE.md), then normalised per frame (hips origin, hip-spine = 1, floor y = 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from bgm2pose.sensing.channel import CHANNELS as CHANNEL_CHANNELS
from bgm2pose.sensing.channel import channel_frames
from bgm2pose.sensing.errors import InputWarning
from bgm2pose.sensing.features import (
    CHANNELS, FRAMES_PER_WINDOW, HOP, N_MELS, WINDOW_SAMPLES, frame_features, windows_from_frames,
)
from bgm2pose.sensing.session import MIC_FILE, REFERENCE_FILE, Session
from bgm2pose.sensing.skeleton import N_JOINTS, hip_spine_length, normalise


@dataclass
class SessionWindows:
    base: np.ndarray  # (B, 9, 12, 128) float32 base features
    channel: np.ndarray  # (B, 17, 12, 128) float32 channel features (sensing.channel)
    poses: np.ndarray  # (B, 12, 63) float32, normalised; NaN-free
    start_sample: np.ndarray  # (B,) int64, first mic sample of each window
    subject: str
    track: str
    seconds: float  # aligned audio the windows were cut from (mic and reference both cover it)

    def __len__(self) -> int:
        return len(self.start_sample)


def aligned_audio(session: Session) -> tuple[np.ndarray, np.ndarray, int]:
    """Mic and reference cut to their common span so index n of both pairs mic[n + first]
    with reference[n + first - latency]. Returns (mic, reference, first mic sample)."""
    latency = int(round(session.info.latency_samples))
    first = max(latency, 0)
    n = max(0, min(session.mic.shape[1] - first, session.reference.shape[1] - (first - latency)))
    if session.mic.shape[1] != session.reference.shape[1]:
        rate = session.info.sample_rate
        warnings.warn(InputWarning(
            f"session {session.folder}: {MIC_FILE} holds {session.mic.shape[1] / rate:.2f} s and "
            f"{REFERENCE_FILE} {session.reference.shape[1] / rate:.2f} s, so only the "
            f"{n / rate:.2f} s both cover are used"), stacklevel=2)
    mic = session.mic[:, first : first + n]
    ref = session.reference[:, first - latency : first - latency + n]
    return mic, ref, first


def window_poses(poses: np.ndarray, first_frame: np.ndarray, frames_per_window: float) -> np.ndarray:
    """Interpolate (F, 21, 3) poses at 12 evenly spaced times from each window's first pose
    row to its last; returns (B, 12, 21, 3)."""
    t = first_frame[:, None] + np.linspace(0.0, frames_per_window - 1, FRAMES_PER_WINDOW)[None]
    lo = np.clip(np.floor(t).astype(np.int64), 0, len(poses) - 2)
    frac = (t - lo)[..., None, None]
    return (1 - frac) * poses[lo] + frac * poses[lo + 1]


def session_windows(session: Session, hop_frames: int = FRAMES_PER_WINDOW) -> SessionWindows:
    """Windows every ``hop_frames`` 50 ms frames (12 = non-overlapping, as AMPL)."""
    mic, ref, first = aligned_audio(session)
    n_frames = mic.shape[1] // HOP
    usable = n_frames * HOP
    starts = np.arange(0, n_frames - FRAMES_PER_WINDOW + 1, hop_frames)
    # A session shorter than one window has none (and maybe not one whole frame to compute).
    if len(starts):
        frames = frame_features(mic[:, :usable], ref[:, :usable])
        channel = channel_frames(mic[:, :usable], ref[:, :usable])
    else:
        frames = np.zeros((len(CHANNELS), 0, N_MELS), np.float32)
        channel = np.zeros((len(CHANNEL_CHANNELS), 0, N_MELS), np.float32)
    start_sample = first + starts * HOP
    sr, fps = session.info.sample_rate, session.info.pose_fps
    if session.poses is None:
        poses = np.zeros((len(starts), FRAMES_PER_WINDOW, 3 * N_JOINTS), np.float32)
    else:
        first_frame = (start_sample / sr - session.info.pose_offset_s) * fps
        per_window = WINDOW_SAMPLES / sr * fps
        keep = (first_frame >= 0) & (first_frame + per_window - 1 <= len(session.poses) - 1)
        # Frames a teacher masked (NaN, sensing.teacher.align) never become targets: a window
        # is kept only if every pose row it interpolates from is finite, and the row after
        # its last (weight 0 in window_poses, but 0 * NaN is NaN).
        masked = np.concatenate([[0], np.cumsum(~np.isfinite(session.poses).all(axis=(1, 2)))])
        rows = np.clip(np.floor(first_frame).astype(np.int64), 0, len(session.poses))
        ends = np.clip(np.floor(first_frame + per_window - 1).astype(np.int64) + 2, 0,
                       len(session.poses))
        keep &= masked[ends] == masked[rows]
        starts, start_sample, first_frame = starts[keep], start_sample[keep], first_frame[keep]
        joints = window_poses(session.poses, first_frame, per_window)
        # A teacher's labels are scaled by the person's hip-spine length, not each frame's
        # noisy estimate of it; motion capture and the virtual rig's truth keep REFERENCE.md's
        # per-frame rule (their bone does not change, so the two agree there).
        scale = (hip_spine_length(session.poses) if "teacher" in session.info.provenance
                 else None)
        poses = normalise(joints, scale).reshape(len(starts), FRAMES_PER_WINDOW, 3 * N_JOINTS)
    return SessionWindows(
        base=windows_from_frames(frames, starts),
        channel=windows_from_frames(channel, starts),
        poses=poses.astype(np.float32),
        start_sample=start_sample.astype(np.int64),
        subject=str(session.info.subject.get("name", "")),
        track=session.info.track,
        seconds=mic.shape[1] / sr,
    )
