"""The live engine: player + audio backend + aligner + estimator + pose feed, wired by options.

``LiveEngine(options)`` checks the music files and opens the model first (so a bad file or
model fails before any device is touched), warms the feature kernels and the onnxruntime
session up, builds the player (the given tracks, or generated music, repeat all), the backend
of the chosen kind and the aligner at the latency:

- virtual rig: ``options.latency`` or 0 (the rig's loopback latency is 0);
- duplex / split: ``options.latency`` if given (the command line wins), else the saved
  calibration profile of the device pair, else a ``LiveError`` asking for
  ``bgm2pose calibrate``.

Honest figures: the virtual rig's subject and generated music default to ones the model did
not train on, read from its card (``data.subjects``, ``data.tracks``): the first built-in
subject and, per bundled genre, the lowest seed it has not seen. A subject or track it did
train on (chosen, or a music file whose stem is a training track's name) is a sentence in
``warnings``: the live MAE would flatter it.

For duplex and split devices a ``calibration.drift.DriftTracker`` refines the latency (and,
for split devices, the clock ratio) online when that module is present.

``realtime=False`` on the virtual rig runs as fast as possible but never more than one hop
ahead of the estimator, so no window is dropped (tests, long checks).

``use_model`` swaps in another exported model without stopping (the estimator takes it
between windows); ``recorder`` makes the session recorder of the engine's rings that ``run
--record`` and the app's Record and Teach use.

Threads: the player's decoder, the backend's audio thread (or device callback), the
estimator's worker, the drift tracker's; ``stop`` ends them in that order after the audio,
so the last complete windows are still estimated, and keeps everything recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bgm2pose.models.estimator import Estimator
from bgm2pose.models.inference import PoseModel, demo_model_path
from bgm2pose.models.inputs import WindowFeatures
from bgm2pose.models.posefeed import PoseFeed
from bgm2pose.sensing.aligner import Aligner
from bgm2pose.sensing.backend_duplex import DuplexBackend
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.backends import AudioBackend
from bgm2pose.sensing.bformat import CONVENTIONS
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import WINDOW_SAMPLES
from bgm2pose.sensing.player import Player, Repeat, Track
from bgm2pose.sensing.recorder import SessionRecorder
from bgm2pose.sensing.session import SessionInfo
from bgm2pose.sensing.sim.music import TrackSpec, generate
from bgm2pose.sensing.sim.rig import SAMPLE_RATE, Rig
from bgm2pose.sensing.sim.subjects import SUBJECTS
from bgm2pose.sensing.teacher import PoseTeacher
from bgm2pose.sensing.teacher.align import MIN_CONFIDENCE

BACKENDS = ("virtual", "duplex", "split")
# The bundled playlist: one generated track per genre (the seeds: ``unseen_music``), each
# long enough that track changes (whose windows are flagged) are rare; generated lazily by
# the player's decoder.
BUNDLED_GENRES = ("ambient", "jazz")
BUNDLED_SECONDS = 120.0
RING_SECONDS = 20.0  # recorded and reference rings: room for a slow reader (recorder)
# Decoded audio queued ahead: the next track is loaded (decoded, resampled or generated, which
# takes seconds on a busy machine) only once the current one is queued to its end, and must
# be ready before the queue runs dry, or the gap plays as silence (flagged windows).
FIFO_SECONDS = 15.0
# Seconds between drift-tracker updates. One device has one clock: its latency moves only
# after an xrun, and a slower check costs the audio callback less CPU on a busy machine (on
# this 2-core box, updates every 0.5 s tripled the duplex xruns). Split devices drift.
DRIFT_INTERVAL_S = {False: 2.0, True: 0.5}
_PACE_TIMEOUT_S = 1.0  # a fast rig waits at most this long for the estimator


class LiveError(UserError, RuntimeError):
    """Live settings that cannot be used (backend, latency, subject)."""


@dataclass
class LiveOptions:
    backend: str = "virtual"  # "virtual" | "duplex" | "split"
    device: str | None = None  # duplex device name/index
    output_device: str | None = None  # split
    input_device: str | None = None  # split
    convention: str = "ambix"  # mic channel convention: "ambix" | "fuma" | "internal"
    model: Path | None = None  # None -> inference.demo_model_path()
    tracks: list[Path] = field(default_factory=list)  # music files; empty -> generated music
    # generated tracks (<genre>-<seed>) played when no files are given; empty -> the bundled
    # genres at seeds the model did not train on
    generated: list[str] = field(default_factory=list)
    hop: int = 2400
    policy: str = "latest"  # "latest" | "average"
    smoothing: float = 0.0  # 0..1 exponential smoothing of published poses
    realtime: bool = True  # virtual rig: paced in real time, or as fast as possible
    seed: int = 0  # virtual scene seed (motion, noise)
    subject: str | None = None  # virtual subject; None -> the first the model did not train on
    latency: float | None = None  # samples; None -> calibration profile, or 0 on the virtual rig
    threads: int = 1  # onnxruntime intra-op threads
    seconds: float | None = None  # virtual rig: stop by itself after this much audio
    rig: Rig = field(default_factory=Rig)  # virtual rig: room, speakers, mic, body paths


def trained_on(card: dict) -> tuple[set[str], set[str]]:
    """(subjects, tracks) a model card says the model trained on; empty when it does not say."""
    data = card.get("data")
    if not isinstance(data, dict):
        return set(), set()
    return set(map(str, data.get("subjects", ()))), set(map(str, data.get("tracks", ())))


def unseen_subjects(trained: set[str]) -> list[str]:
    """The built-in subjects not in ``trained``, in order."""
    return [s.name for s in SUBJECTS if s.name not in trained]


def unseen_music(trained: set[str]) -> list[str]:
    """Per bundled genre, the generated track of the lowest seed not in ``trained``."""
    return [next(spec.name for seed in itertools.count()
                 if (spec := TrackSpec(genre, seed, BUNDLED_SECONDS)).name not in trained)
            for genre in BUNDLED_GENRES]


def generated_tracks(names: Sequence[str]) -> list[Track]:
    """Generated tracks by name (``jazz-0003``), each ``BUNDLED_SECONDS`` long."""
    return [Track(spec.name, functools.partial(generate, spec, SAMPLE_RATE))
            for spec in (TrackSpec.from_name(name, BUNDLED_SECONDS) for name in names)]


def virtual_scene(options: LiveOptions) -> VirtualScene:
    """The virtual rig's scene for these options (the same as `bgm2pose virtual-room
    --subject S --motion-seed N --noise-seed N --rig R` builds)."""
    return VirtualScene.named(options.subject, motion_seed=options.seed, noise_seed=options.seed,
                              rig=options.rig)


class LiveEngine:
    def __init__(self, options: LiveOptions):
        self.options = options
        if options.backend not in BACKENDS:
            raise LiveError(f"backend {options.backend!r} is unknown; use one of "
                            f"{', '.join(BACKENDS)}")
        if options.convention not in CONVENTIONS:
            raise LiveError(f"mic convention {options.convention!r} is unknown; use one of "
                            f"{', '.join(CONVENTIONS)}")
        if options.hop < 1 or options.hop > WINDOW_SAMPLES:
            raise LiveError(f"hop {options.hop} samples is outside 1..{WINDOW_SAMPLES}; use "
                            "e.g. 2400 (50 ms)")
        tracks = [Track.from_file(p) for p in options.tracks]
        problems = [t.problem for t in tracks if t.problem is not None]
        if problems and len(problems) == len(tracks):  # it would play silence, unexplained
            raise LiveError(problems[0] if len(problems) == 1 else
                            f"none of the {len(problems)} music files can be played: "
                            + " | ".join(problems))
        # Sentences for whoever runs the engine to show: the other tracks play.
        self.warnings = [f"{problem} (skipped; the other tracks play)" for problem in problems]
        self.model = PoseModel(options.model or demo_model_path(), threads=options.threads)
        self.trained_subjects, self.trained_tracks = trained_on(self.model.card)
        # A model that trained on every subject gets the first, and a warning saying so.
        self.options = options = dataclasses.replace(
            options, subject=options.subject or next(
                iter(unseen_subjects(self.trained_subjects)), SUBJECTS[0].name),
            generated=options.generated or unseen_music(self.trained_tracks))
        # What is played, by the names data sets give tracks (a music file: its stem).
        if options.tracks:
            self.music = [Path(p).stem for p, t in zip(options.tracks, tracks)
                          if t.problem is None]
        else:
            tracks = generated_tracks(options.generated)
            self.music = list(options.generated)
        if options.backend == "virtual":
            self.warnings += self._seen_warnings()
        self._warm_up(self.model)
        self.feed = PoseFeed()
        self.player = Player(tracks, repeat=Repeat.ALL,
                             ring_capacity=int(RING_SECONDS * SAMPLE_RATE),
                             fifo_frames=int(FIFO_SECONDS * SAMPLE_RATE))
        self.rig = Rig()
        self.backend = self._backend()
        self.profile = None  # the calibration profile used, if any
        self.aligner = Aligner(self.backend.recorded, self.player.reference, self._latency(),
                               hop=options.hop, sample_rate=self.backend.sample_rate)
        if self.profile is not None and options.backend == "split":
            self.aligner.set_clock_ratio(self.profile.clock_ratio)
        self.drift = self._drift_tracker()
        self.estimator = Estimator(
            self.model, self.backend, self.aligner, self.feed, policy=options.policy,
            smoothing=options.smoothing,
            drift_ppm=None if self.drift is None else lambda: self.drift.drift_ppm)
        if isinstance(self.backend, VirtualBackend) and not options.realtime:
            self.backend.pace = self._wait_for_estimator
        self._started = False
        self._stopped = False

    def _seen_warnings(self) -> list[str]:
        """A sentence per subject or track of the virtual rig that the model trained on."""
        flatter = "so its live figures look better than they are"
        warnings = []
        if self.options.subject in self.trained_subjects:
            unseen = unseen_subjects(self.trained_subjects)
            warnings.append(f"the model trained on subject {self.options.subject}, {flatter} "
                            f"(subjects it has not seen: {', '.join(unseen) or 'none'})")
        for name in self.music:
            if name in self.trained_tracks:
                warnings.append(f"the model trained on the track {name}, {flatter} (generated "
                                "tracks it has not seen: "
                                f"{', '.join(unseen_music(self.trained_tracks))})")
        return warnings

    def describe(self) -> str:
        """The music, and on the virtual rig the subject and whether the model trained on
        them (real devices have no ground truth, so no figure to flatter)."""
        music = f"music {', '.join(self.music)}"
        if self.options.backend != "virtual":
            return music
        what = f"subject {self.options.subject} and {music}"
        if not (self.trained_subjects or self.trained_tracks):
            return f"{what} (the model card does not say what it trained on)"
        return f"{what}, {'some' if self._seen_warnings() else 'none'} of which the model " \
            "trained on"

    def _wait_for_estimator(self, start: int) -> None:
        """Fast virtual rig: hold the block starting at recorded sample ``start`` until the
        estimator has handled every window that ends before it, so the rig is never more
        than one hop ahead and no window is skipped."""
        hop = self.options.hop
        if start < -(-self.aligner.window // hop) * hop:  # before the first window's end
            return
        waited = 0.0
        while (self.backend.running and waited < _PACE_TIMEOUT_S
               and not self.estimator.wait_for_progress(start - hop + 1, 0.05)):
            waited += 0.05

    # -- construction ---------------------------------------------------------------------

    @staticmethod
    def _warm_up(model: PoseModel) -> None:
        """First calls compile the feature kernels and size onnxruntime's buffers: do them
        now, not on the first live window (which would then be late)."""
        silence = np.zeros((4, WINDOW_SAMPLES), np.float32)
        model.predict(WindowFeatures(model.inputs)(silence, silence[:2], WINDOW_SAMPLES))

    def _backend(self) -> AudioBackend:
        o = self.options
        if o.backend == "virtual":
            scene = virtual_scene(o)
            self.rig = scene.rig
            # An exact end: a rig stopped from outside may render one block more than the
            # estimator then sees.
            stop_after = None if o.seconds is None else int(o.seconds * SAMPLE_RATE)
            return VirtualBackend(self.player, scene, realtime=o.realtime,
                                  ring_seconds=RING_SECONDS, stop_after=stop_after)
        if o.backend == "duplex":
            if o.device is None:
                raise LiveError("the duplex backend needs a device; pass --device NAME (see "
                                "`bgm2pose devices`)")
            return DuplexBackend(self.player, _device(o.device), mic_convention=o.convention,
                                 ring_seconds=RING_SECONDS)
        if o.output_device is None or o.input_device is None:
            raise LiveError("the split backend needs both devices; pass --output-device and "
                            "--input-device (see `bgm2pose devices`)")
        try:
            split = importlib.import_module("bgm2pose.sensing.backend_split")
        except ImportError as exc:
            raise LiveError(f"split devices are not available in this build ({exc}); use one "
                            "duplex device (--backend duplex)") from None
        return split.SplitBackend(self.player, _device(o.output_device),
                                  _device(o.input_device), convention=o.convention,
                                  ring_seconds=RING_SECONDS)

    def _device_pair(self) -> tuple[str, str]:
        o = self.options
        if o.backend == "duplex":
            name = _device_name(o.device)
            return name, name
        return _device_name(o.output_device), _device_name(o.input_device)

    def _latency(self) -> float:
        o = self.options
        if o.latency is not None:
            return float(o.latency)
        if o.backend == "virtual":
            return 0.0
        output, input_ = self._device_pair()
        try:
            profiles = importlib.import_module("bgm2pose.calibration.profiles")
        except ImportError:
            profile = None
        else:
            profile = profiles.load_profile(output, input_, self.backend.sample_rate)
        if profile is None:
            raise LiveError(f"no calibration for output {output!r} and input {input_!r}; run "
                            "`bgm2pose calibrate` with these devices first, or pass --latency "
                            "SAMPLES")
        self.profile = profile
        return float(profile.latency_samples)

    def _drift_tracker(self):
        if self.options.backend == "virtual":
            return None
        try:
            drift = importlib.import_module("bgm2pose.calibration.drift")
        except ImportError:
            return None
        # Split devices restart their relative timing every run: the tracker needs the
        # profile's absolute flight time; one device keeps the latency it starts from.
        split = self.options.backend == "split"
        flight = self.profile.flight_samples if split and self.profile is not None else None
        return drift.DriftTracker(self.backend.recorded, self.player.reference, self.aligner,
                                  initial_latency=self.aligner.latency, track_clock=split,
                                  flight_samples=flight, sample_rate=self.backend.sample_rate,
                                  interval=DRIFT_INTERVAL_S[split])

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise LiveError("the live engine is already started; make a new one to run again")
        self._started = True
        if not isinstance(self.backend, VirtualBackend):
            # The device callback needs the GIL within a period (~10 ms): make the worker
            # threads hand it over after 1 ms instead of Python's default 5 ms, and keep the
            # collector's full passes short by leaving everything loaded so far out of them.
            sys.setswitchinterval(0.001)
            gc.freeze()
        self.player.start()
        try:
            self.backend.start()
        except BaseException:
            self.player.close()
            self._stopped = True
            raise
        self.estimator.start()
        if self.drift is not None:
            self.drift.start()

    def stop(self) -> None:
        """Stop the audio, estimate the last complete windows, end the threads; idempotent.
        What was recorded stays in the rings."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        self.backend.stop()
        self.estimator.finish()
        if self.drift is not None:
            self.drift.stop()
        self.player.close()

    def use_model(self, path: Path) -> None:
        """Estimate with the exported model at ``path`` from the next window on, while
        everything keeps running. Loads and warms it up in the caller's thread (a second or
        so: call it off the GUI thread); a model that cannot be loaded raises before anything
        changes."""
        model = PoseModel(path, threads=self.options.threads)
        self._warm_up(model)
        self.estimator.use_model(model)
        self.model = model
        self.options = dataclasses.replace(self.options, model=Path(path))
        self.trained_subjects, self.trained_tracks = trained_on(model.card)

    def recorder(self, folder: Path, tool: str, first_sample: int = 0,
                 teacher: PoseTeacher | None = None,
                 min_confidence: float = MIN_CONFIDENCE) -> SessionRecorder:
        """A recorder (not started) of this engine's rings into ``folder`` from ring sample
        ``first_sample``, labelled by ``teacher`` (started) if given, else by the rig's
        ground truth where it has one."""
        return SessionRecorder(folder, self.backend.recorded, self.player.reference,
                               self.session_info(tool),
                               ground_truth=None if teacher else self.backend.ground_truth,
                               first_sample=first_sample, teacher=teacher,
                               min_confidence=min_confidence)

    @property
    def running(self) -> bool:
        return (self._started and not self._stopped and self.backend.running
                and self.estimator.running)

    def session_info(self, tool: str) -> SessionInfo:
        """What a recording's session file says about this run (``tool``: who recorded)."""
        options = self.options
        virtual = options.backend == "virtual"
        scene = getattr(self.backend, "scene", None)
        subject = scene.subject if virtual and scene is not None else None
        return SessionInfo(
            sample_rate=self.backend.sample_rate, rig=self.rig.to_dict(),
            subject={} if subject is None else {"name": subject.name, "height": subject.height,
                                                "build": subject.build},
            track=", ".join(t.name for t in self.player.tracks if t.problem is None),
            latency_samples=self.aligner.latency, mic_convention="internal",
            provenance={"tool": tool, "backend": options.backend,
                        **({"seed": options.seed} if virtual else {})})


def _device(device: str) -> int | str:
    """A device index given as text is an index, anything else a name."""
    return int(device) if device.strip().isdigit() else device


def _device_name(device: str | None) -> str:
    """The name PortAudio gives the device (profiles are kept by name), or the text given."""
    import sounddevice as sd

    try:
        return str(sd.query_devices(_device(device))["name"])
    except (ValueError, sd.PortAudioError):
        return str(device)
