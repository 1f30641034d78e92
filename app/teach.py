"""``run --record DIR --teacher ...``: the pose teacher that labels a recording (issue 15).

``--teacher virtual`` is the virtual rig's ground truth seen as by a camera: 30 fps,
``--teacher-noise`` cm RMS, and a true latency of ``VIRTUAL_CAMERA_LATENCY_S`` that the
``--teacher-latency`` setting corrects (so a wrong setting shows as it would with a camera).
``--teacher camera`` (camera 0), ``camera:INDEX`` or ``camera:FILE`` runs MediaPipe Pose on a
camera or on a video file played in time with the audio (the ``[camera]`` extra). The
teacher's poses and confidences go into the session folder; camera images are never written.
"""

from __future__ import annotations

import argparse

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.teacher import PoseTeacher
from bgm2pose.sensing.teacher.align import MIN_CONFIDENCE

VIRTUAL_CAMERA_LATENCY_S = 0.1  # a webcam's typical delay from light to frame
DEFAULT_NOISE_CM = 3.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", metavar="virtual|camera[:INDEX|FILE]",
                   help="label the --record session with a pose teacher: the virtual rig's truth "
                        "with a camera's flaws, or MediaPipe Pose on a camera (default index 0) "
                        "or a video file (needs the [camera] extra)")
    p.add_argument("--teacher-latency", type=float, default=VIRTUAL_CAMERA_LATENCY_S,
                   metavar="S", help="the camera's delay from light to frame, taken off its "
                                     "time stamps (default: %(default)s s)")
    p.add_argument("--teacher-noise", type=float, default=DEFAULT_NOISE_CM, metavar="CM",
                   help="virtual teacher: RMS error of each joint (default: %(default)s cm)")
    p.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE,
                   help="frames with a joint the teacher is less sure of are masked and never "
                        "train (default: %(default)s)")


def make_teacher(args: argparse.Namespace, engine) -> PoseTeacher | None:
    """The teacher ``args`` ask for on ``engine``'s rig, not started; None without --teacher."""
    if not args.teacher:
        return None
    if not args.record:
        raise UserError("--teacher labels a recording; add --record DIR")
    return teacher_for(args.teacher, engine, args.teacher_latency, args.teacher_noise, args.seed)


def teacher_for(spec: str, engine, latency_s: float = VIRTUAL_CAMERA_LATENCY_S,
                noise_cm: float = DEFAULT_NOISE_CM, seed: int = 0) -> PoseTeacher:
    """The teacher ``spec`` (virtual, camera, camera:INDEX or camera:FILE) names on
    ``engine``'s rig, not started; ``latency_s`` is the camera latency setting."""
    kind, _, source = spec.partition(":")
    if kind == "virtual" and not source:
        if engine.options.backend != "virtual":
            raise UserError("the virtual teacher knows the poses of the virtual rig only; use "
                            "--backend virtual, or --teacher camera on a real rig")
        from bgm2pose.sensing.teacher.virtual import VirtualTeacher

        return VirtualTeacher(engine.backend.ground_truth, engine.backend.sample_rate,
                              noise_cm=noise_cm, latency_s=VIRTUAL_CAMERA_LATENCY_S,
                              correction_s=latency_s, seed=seed)
    if kind == "camera":
        from bgm2pose.sensing.teacher.camera import CameraTeacher

        return CameraTeacher(source or "0", engine.backend.sample_rate,
                             clock=lambda: engine.backend.recorded.end, latency_s=latency_s)
    raise UserError(f"teacher {spec!r} is unknown; use virtual, camera, camera:INDEX "
                    "or camera:VIDEO_FILE")
