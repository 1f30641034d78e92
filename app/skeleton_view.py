"""The live 3D view: the estimated skeleton (and a faint ground-truth ghost) standing in the rig.

Frames: poses and the rig live in the project's world frame (metres, **y up**, see
``sensing.sim.rig``); pyqtgraph's GL view is **z up**. ``world_to_gl`` is the one place that
converts, a proper rotation (x, y, z) -> (x, -z, y), so left stays left.

Poses arrive normalised per frame (``models.skeleton.normalise``: Hips at x = z = 0, the lowest
joint at y = 0, hip-spine length 1). ``place_pose`` scales them by a nominal hip-spine length
(the average subject's, from ``sensing.sim.subjects``) and stands them at the centre of the
rig's person area, feet on the floor.

Drawing: one ``GLLinePlotItem`` (mode 'lines') for all bones and one ``GLScatterPlotItem`` for
all joints, so a new pose is two ``setData`` calls; left side blue, right side orange, the
spine white. The ghost is one more line item in translucent green.

``project`` maps GL points to framebuffer pixels with the same matrices the view draws with,
so tests (and anything else) can check where joints landed in ``grabFramebuffer()``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pyqtgraph.opengl as gl
from OpenGL import GL
from PyQt6 import QtCore, QtGui, QtOpenGL, QtWidgets
from pyqtgraph.opengl.GLViewWidget import GLViewMixin

from bgm2pose.sensing.sim.rig import Rig
from bgm2pose.sensing.sim.subjects import SUBJECTS
from bgm2pose.sensing.skeleton import BONES, INDEX, LEFT, N_JOINTS, RIGHT, as_joints

# Hip-spine length of the average subject (S1, 1.75 m): the scale of a normalised pose.
NOMINAL_HIP_SPINE_M = float(np.linalg.norm(SUBJECTS[0].offsets()[INDEX["Spine"]]))

LEFT_COLOUR = (0.25, 0.6, 1.0, 1.0)
RIGHT_COLOUR = (1.0, 0.5, 0.1, 1.0)
CENTRE_COLOUR = (0.95, 0.95, 0.95, 1.0)
GHOST_COLOUR = (0.3, 1.0, 0.4, 0.45)
SPEAKER_COLOUR = (0.35, 0.37, 0.5, 1.0)
MIC_COLOUR = (1.0, 0.85, 0.2, 1.0)
BACKGROUND = (18, 18, 24)

# The skeleton is drawn over the rig (no depth test, normal alpha blending, drawn last), so a
# speaker or the mic never hides it whatever the camera angle.
_ON_TOP = {GL.GL_DEPTH_TEST: False, GL.GL_BLEND: True, GL.GL_CULL_FACE: False,
           "glBlendFunc": (GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA)}

_WORLD_TO_GL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def share_gl_contexts() -> None:
    """Let every GL view share one context; call before the QApplication is created.

    pyqtgraph caches its shader programs per process, not per context, so a second view
    (a new window, or the view of a window opened after another was closed) would draw with
    programs of a context it does not own: wrong matrices or GL errors.
    """
    QtCore.QCoreApplication.setAttribute(QtCore.Qt.ApplicationAttribute.AA_ShareOpenGLContexts)


def world_to_gl(points: np.ndarray) -> np.ndarray:
    """World (..., 3) metres y up -> GL view coordinates (..., 3) z up."""
    return np.asarray(points, float) @ _WORLD_TO_GL.T


def place_pose(pose: np.ndarray, rig: Rig, hip_spine_m: float = NOMINAL_HIP_SPINE_M
               ) -> np.ndarray:
    """A normalised pose (21, 3) or (63,) -> world positions (21, 3) in the person area."""
    joints = as_joints(np.asarray(pose, float)).reshape(N_JOINTS, 3)
    return np.asarray(rig.area_center, float) + joints * hip_spine_m


def joint_colours() -> np.ndarray:
    """(21, 4) RGBA per joint: left side, right side, or centre line."""
    colours = np.tile(np.array(CENTRE_COLOUR), (N_JOINTS, 1))
    colours[list(LEFT)] = LEFT_COLOUR
    colours[list(RIGHT)] = RIGHT_COLOUR
    return colours


def bone_segments(joints: np.ndarray) -> np.ndarray:
    """(21, 3) joints -> (2 * bones, 3) segment end points in ``BONES`` order."""
    return joints[np.asarray(BONES).reshape(-1)]


def project(view: GLViewMixin, points: np.ndarray) -> np.ndarray:
    """GL points (N, 3) -> (N, 2) framebuffer pixels (x right, y down) of ``view``."""
    viewport = view.getViewport()
    mvp = np.array(view.projectionMatrix(viewport, viewport).data()).reshape(4, 4).T
    mvp = mvp @ np.array(view.viewMatrix().data()).reshape(4, 4).T
    pts = np.asarray(points, float)
    clip = np.c_[pts, np.ones(len(pts))] @ mvp.T
    ndc = clip[:, :3] / clip[:, 3:4]
    scale = view.devicePixelRatioF()
    x = (ndc[:, 0] + 1) / 2 * viewport[2] * scale
    y = (1 - ndc[:, 1]) / 2 * viewport[3] * scale
    return np.c_[x, y]


def _box(size: float) -> gl.MeshData:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
                       float) * size / 2
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return gl.MeshData(vertexes=corners, faces=faces)


class SkeletonView(GLViewMixin, QtOpenGL.QOpenGLWindow):
    """The rig (floor grid, speakers, mic, person area) with a live skeleton and ghost.

    A ``QOpenGLWindow`` (shown in widgets through ``SkeletonPanel``), not a ``QOpenGLWidget``:
    a GL widget makes Qt composite the whole top-level window through GL on every frame,
    which under software GL (llvmpipe) cut the frame rate about four-fold.

    Mouse: left drag orbits, wheel zooms, ctrl/middle drag pans; ``reset_view`` returns to the
    default camera.
    """

    def __init__(self, rig: Rig | None = None):
        super().__init__()
        self.setBackgroundColor(BACKGROUND)
        self.rig = Rig() if rig is None else rig
        self.frames_drawn = 0  # paintGL calls, for the frame-rate benchmark
        self._joints_gl: np.ndarray | None = None
        self._ghost_gl: np.ndarray | None = None
        self._rig_items: list[gl.GLGraphicsItem.GLGraphicsItem] = []
        self._bones = gl.GLLinePlotItem(mode="lines", width=4, antialias=True,
                                        color=np.repeat(joint_colours()[[c for _, c in BONES]],
                                                        2, axis=0), glOptions=_ON_TOP)
        self._joints = gl.GLScatterPlotItem(size=11, color=joint_colours(), pxMode=True,
                                            glOptions=_ON_TOP)
        self._ghost = gl.GLLinePlotItem(mode="lines", width=3, antialias=True,
                                        color=GHOST_COLOUR, glOptions=_ON_TOP)
        for depth, item in enumerate((self._ghost, self._bones, self._joints), start=10):
            item.setVisible(False)
            item.setDepthValue(depth)
            self.addItem(item)
        self.set_rig(self.rig)

    # -- scene ------------------------------------------------------------------------------

    def set_rig(self, rig: Rig) -> None:
        """Draw the room floor, speakers, mic and person area of ``rig`` (replacing any)."""
        for item in self._rig_items:
            self.removeItem(item)
        self.rig = rig
        lx, _, lz = rig.room_size
        grid = gl.GLGridItem(color=(255, 255, 255, 40))
        grid.setSize(lx, lz)
        grid.setSpacing(0.5, 0.5)
        grid.translate(*world_to_gl([lx / 2, 0.0, lz / 2]))
        items: list = [grid]
        for speaker in rig.speakers:
            box = gl.GLMeshItem(meshdata=_box(0.35), color=SPEAKER_COLOUR, smooth=False,
                                drawEdges=True, edgeColor=(1, 1, 1, 0.8))
            box.translate(*world_to_gl(speaker))
            items.append(box)
        mic = gl.GLMeshItem(meshdata=gl.MeshData.sphere(10, 16, radius=0.06), color=MIC_COLOUR,
                            shader="shaded", smooth=True)
        mic.translate(*world_to_gl(rig.mic_position))
        items.append(mic)
        angle = np.linspace(0, 2 * np.pi, 65)
        circle = np.c_[np.cos(angle), np.zeros_like(angle), np.sin(angle)] * rig.area_radius
        items.append(gl.GLLinePlotItem(pos=world_to_gl(circle + np.asarray(rig.area_center)),
                                       mode="line_strip", color=(1, 1, 1, 0.35), width=2,
                                       antialias=True, glOptions="translucent"))
        for item in items:
            self.addItem(item)
        self._rig_items = items
        self.reset_view()

    def reset_view(self) -> None:
        """The default camera: behind the mic, a little above, looking at the person."""
        centre = world_to_gl(np.asarray(self.rig.area_center) + [0.0, 0.9, 0.0])
        self.setCameraPosition(pos=pg.Vector(*centre), distance=4.0, elevation=16, azimuth=72)

    # -- live data ---------------------------------------------------------------------------

    def set_pose(self, pose: np.ndarray | None) -> None:
        """Show a normalised pose (21, 3) or (63,); None hides the skeleton."""
        if pose is None:
            self._joints_gl = None
            self._bones.setVisible(False)
            self._joints.setVisible(False)
            return
        self._joints_gl = world_to_gl(place_pose(pose, self.rig))
        self._bones.setData(pos=bone_segments(self._joints_gl))
        self._joints.setData(pos=self._joints_gl)
        self._bones.setVisible(True)
        self._joints.setVisible(True)

    def set_ghost(self, pose: np.ndarray | None) -> None:
        """Show the ground-truth pose (normalised) as a faint ghost; None hides it."""
        if pose is None:
            self._ghost_gl = None
            self._ghost.setVisible(False)
            return
        self._ghost_gl = world_to_gl(place_pose(pose, self.rig))
        self._ghost.setData(pos=bone_segments(self._ghost_gl))
        self._ghost.setVisible(True)

    def joint_pixels(self) -> np.ndarray | None:
        """Framebuffer pixels (21, 2) of the skeleton's joints as last drawn, or None."""
        return None if self._joints_gl is None else project(self, self._joints_gl)

    def ghost_bone_pixels(self) -> np.ndarray | None:
        """Framebuffer pixels (bones, 2) of the ghost's bone midpoints, or None."""
        if self._ghost_gl is None:
            return None
        ends = bone_segments(self._ghost_gl).reshape(-1, 2, 3)
        return project(self, ends.mean(axis=1))

    def paintGL(self) -> None:
        super().paintGL()
        self.frames_drawn += 1


CAPTION = "estimate: coloured skeleton · truth (virtual rig): green ghost"


class SkeletonPanel(QtWidgets.QWidget):
    """The 3D view in a widget, under a row with the "Reset view" button and over a caption
    that says what is drawn and, with ground truth, how far off the estimate is next to the
    mean-pose predictor (``show_accuracy``): a moving skeleton can look right and still be no
    better than always drawing the average pose."""

    def __init__(self, view: SkeletonView, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.container = QtWidgets.QWidget.createWindowContainer(view, self)
        self.container.setMinimumSize(320, 240)
        self.container.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.reset_button = QtWidgets.QPushButton("Reset view")
        self.reset_button.clicked.connect(view.reset_view)
        hint = QtWidgets.QLabel("drag: orbit · wheel: zoom · ctrl+drag: pan")
        hint.setStyleSheet("color: gray")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.reset_button)
        row.addWidget(hint)
        row.addStretch(1)
        self.caption = QtWidgets.QLabel(CAPTION)
        self.caption.setStyleSheet("color: gray")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.container, 1)
        layout.addWidget(self.caption)

    def show_accuracy(self, mae_text: str | None) -> None:
        """Caption the view with ``LiveStats.mae_text()`` (None: no ground truth, no figure)."""
        self.caption.setText(CAPTION if mae_text is None else f"{CAPTION} · live {mae_text}")

    def grab_with_view(self, top: QtWidgets.QWidget) -> QtGui.QImage:
        """``top.grab()`` with the GL view painted in: a widget grab leaves native GL
        windows out."""
        image = top.grab().toImage()
        painter = QtGui.QPainter(image)
        origin = self.container.mapTo(top, QtCore.QPoint(0, 0))
        frame = self.view.grabFramebuffer()
        painter.drawImage(QtCore.QRect(origin, self.container.size()), frame)
        painter.end()
        return image
