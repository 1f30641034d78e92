"""The camera teacher with the real MediaPipe Pose model (the ``[camera]`` extra) on a video
file standing in for a camera, and what it says when it cannot run."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import skimage.data
from bgm2pose.sensing.skeleton import INDEX
from bgm2pose.sensing.teacher import TeacherError
from bgm2pose.sensing.teacher.camera import CameraTeacher

@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


def test_a_video_file_is_taught_frame_by_frame_on_the_audio_clock(astronaut, tmp_path,
                                                                    write_video):
    """Frame k of a 30 fps video is the view at audio sample k / 30 * 48000, less the camera
    latency; frames without a person are kept with confidence 0."""
    empty = np.full_like(astronaut, 128)
    video = tmp_path / "take.avi"
    write_video(video, [empty] * 4 + [astronaut] * 8, fps=30)
    for latency_s in (0.0, 0.1):
        teacher = CameraTeacher(video, latency_s=latency_s)
        with teacher:
            assert teacher.wait(timeout=120)
            view = teacher.latest_view()
        # The preview: the last frame, with the joints on the person (the head on her face,
        # her left arm on the image's right), held in memory until the teacher stops.
        np.testing.assert_array_equal(view.image.shape, astronaut.shape)
        head, left, right = view.joints[[INDEX["Head"], INDEX["LeftArm"], INDEX["RightArm"]]]
        assert 0.38 < head[0] < 0.52 and 0.15 < head[1] < 0.3, head
        assert left[0] > head[0] > right[0] and left[1] > head[1]
        assert teacher.latest_view() is None
        got = teacher.poses(-48_000, 48_000)
        np.testing.assert_allclose(got.sample, np.arange(12) * 1600 - latency_s * 48_000)
        assert np.all(got.confidence[:4] == 0)
        assert np.all(got.confidence[4:, INDEX["Head"]] > 0.9)
        assert teacher.error is None
        # Asked for a span, it gives the frames stamped inside it.
        assert len(teacher.poses(1600 * 4, 1600 * 6)) == 2


def test_without_the_camera_extra_the_teacher_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    with pytest.raises(TeacherError, match=r"needs MediaPipe and OpenCV, which are not installed "
                                           r"here .*pip install -e '\.\[camera\]'"):
        CameraTeacher(tmp_path / "any.avi")


def test_a_source_that_is_no_camera_and_no_file_is_one_sentence(tmp_path):
    with pytest.raises(TeacherError, match="neither a camera index nor a video file"):
        CameraTeacher(str(tmp_path / "missing.mp4"))
