"""Channel features: how the room and the body filter the played music, whatever the music.

The paper's input, log-mel "mic minus music", cancels the music only where the room is flat.
Because the played music is known sample by sample, the filter itself can be estimated: per
50 ms frame, a 2-input (music left, right) x 4-output (W, X, Y, Z) transfer function, turned
into impulse responses and compared with the room's slowly adapting background. What is left
is the body: the shadowed direct path and the faint reflections around it.

Per frame (the frames of ``features``: frame t ends at sample 2400 (t + 1) of the aligned
audio, and depends on nothing after it):

- Cross-spectra of Hann sub-frames of ``SUB_FFT`` samples every ``SUB_HOP`` (two per frame,
  the newest ending with the frame), averaged exponentially over about ``short_s`` seconds
  (bias-corrected, so the first frames are plain means of what has been heard).
- ``H(f) = S_ym (S_mm + lambda I)^-1`` in the band 0.3-18 kHz: left and right are correlated,
  so the 2 x 2 inverse is regularised by ``regularisation`` times the mean music power of the
  bin. Outside the band the music says little (speakers, the body's size); a raised-cosine
  taper keeps the impulse responses' ringing short.
- The background is the room as it was before the frame: the exponential mean of H over
  the last ``background_s`` seconds, causal, as the live engine has it, each bin weighted by
  how well the music excited it. The frame's change from it, ``H - H_background``, is
  weighted by the same excitation (a bin 20 dB under the frame's mean counts half; music
  with a sparse spectrum, a piano's harmonics, leaves bins in between that the estimate only
  guesses, and weighting them out keeps the change as quiet on a solo piano as on broadband
  music), then turned into impulse responses of the 8 (speaker, mic channel) pairs. The
  background's strongest W tap per speaker is the direct path (looked for once the
  background has ``settle_s`` seconds of valid frames, then every frame, so a moved speaker is
  followed); its amplitude scales the pair's changes, so the features do not depend on the
  playback level.
- Features (:data:`CHANNELS`, 128 values each): ``near`` = the change's taps themselves
  from 0.5 ms before the direct path to 2.2 ms after it (signed, phase kept: a shadow is
  negative, a reflection oscillates); ``far`` = the change's energy in dB in 128 bins of
  5 taps from 0.5 ms before to 12.8 ms after the direct path (late reflections off the body
  by way of walls); ``valid`` = 1 for a usable frame.
- Silence: a frame whose newest sub-frame of music is 30 dB under its recent level (jazz gaps, a pause) or
  absent is flagged ``valid = 0`` and gets the neutral "nothing changed" values (near 0, far
  at its floor); it does not move the background either.

``ChannelTracker.push`` takes any number of whole frames and carries the state, so a session
in one call and a live stream hop by hop give the same frames (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.signal

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import HOP, N_MELS, SAMPLE_RATE

SUB_FFT = 4096
SUB_HOP = HOP // 2
_N_MIC, _N_MUSIC = 4, 2
_MICS = ("W", "X", "Y", "Z")
_SPEAKERS = ("L", "R")
PAIRS = tuple(f"{s}{c}" for s in _SPEAKERS for c in _MICS)
N_TAPS = N_MELS  # values per feature channel, so a channel frame is shaped like a mel frame
CHANNELS = (*(f"near_{p}" for p in PAIRS), *(f"far_{p}" for p in PAIRS), "valid")
_BAND_HZ = (300.0, 18_000.0)
_TAPER_HZ = 200.0
_PRE = 24  # taps before the direct path: 0.5 ms
_FAR_BIN = 5  # taps per far bin: 128 bins span 12.8 ms
# Background lags kept, relative to the estimate's lag 0: enough before and after the latest
# direct path the search allows to cut the far span around it.
_LAG_MIN, _LAG_MAX = -_PRE, 1300
_BG_LAGS = np.arange(_LAG_MIN - _PRE, _LAG_MAX + N_TAPS * _FAR_BIN)
FAR_FLOOR_DB = -80.0
_SILENCE = 1e-3  # -30 dB under the recent music level
_ABSOLUTE_SILENCE = 1e-12  # mean power per bin of digital silence plus dither
# A bin excited this much below the frame's mean counts half: below it the estimate is noise.
_EXCITATION = 0.01


class ChannelError(UserError, ValueError):
    """Audio the channel estimate cannot use."""


@dataclass(frozen=True)
class ChannelSettings:
    short_s: float = 0.3  # averaging of the cross-spectra behind each frame's estimate
    background_s: float = 30.0  # running mean of the empty-ish room
    settle_s: float = 2.0  # background needed before the direct path is located
    regularisation: float = 1e-3  # of the mean music power per bin


@dataclass
class _State:
    tail: np.ndarray  # (6, SUB_FFT - SUB_HOP) last samples, for the sub-frames across pushes
    spectra: np.ndarray  # (bins, 11) complex running sums: S_ym (8, mic-major), S_LL, S_RR, S_LR
    weight: float  # running sum of the sub-frame weights (bias correction)
    background: np.ndarray  # (bins, 8) complex running sum of H, weighted by its excitation
    background_weight: np.ndarray  # (bins,) running sum of those weights
    frames: float  # running count of valid frames (the background's age)
    level: float  # running mean of the music power of valid frames
    level_weight: float


@dataclass(frozen=True)
class ChannelFrames:
    features: np.ndarray  # (17, frames, 128) float32, CHANNELS order
    transfer: np.ndarray  # (bins in band, 4, 2) complex128: the newest frame's H(f)


class ChannelTracker:
    """Channel features of a stream of aligned mic (4, N) and music (2, N), frame by frame."""

    def __init__(self, settings: ChannelSettings = ChannelSettings(), sample_rate: int = SAMPLE_RATE):
        if sample_rate != SAMPLE_RATE:
            raise ChannelError(f"channel features need {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; "
                               "resample it first.")
        self.settings = settings
        freqs = scipy.fft.rfftfreq(SUB_FFT, 1 / SAMPLE_RATE)
        lo, hi = _BAND_HZ
        self._band = np.flatnonzero((freqs >= lo) & (freqs <= hi))
        f = freqs[self._band]
        rise = np.clip((f - lo) / _TAPER_HZ, 0, 1)
        fall = np.clip((hi - f) / _TAPER_HZ, 0, 1)
        self._taper = np.sin(0.5 * np.pi * np.minimum(rise, fall)) ** 2
        self._window = scipy.signal.get_window("hann", SUB_FFT)
        self._decay = np.exp(-SUB_HOP / (SAMPLE_RATE * settings.short_s))
        self._frame_decay = np.exp(-HOP / (SAMPLE_RATE * settings.background_s))
        self._settle = settings.settle_s * SAMPLE_RATE / HOP
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new room, or a stream that jumped."""
        bins = len(self._band)
        self._state = _State(
            tail=np.zeros((_N_MIC + _N_MUSIC, SUB_FFT - SUB_HOP)),
            spectra=np.zeros((bins, 11), complex), weight=0.0,
            background=np.zeros((bins, len(PAIRS)), complex), background_weight=np.zeros(bins), frames=0.0,
            level=0.0, level_weight=0.0)

    def restart(self) -> None:
        """Forget the short-term audio only (a gap in the stream); the room stays learnt."""
        self._state.tail[:] = 0.0
        self._state.spectra[:] = 0.0
        self._state.weight = 0.0

    def push(self, mic: np.ndarray, music: np.ndarray) -> ChannelFrames:
        """Features of the whole frames in mic (4, N) and music (2, N), N a multiple of 2400."""
        mic, music = np.asarray(mic, np.float64), np.asarray(music, np.float64)
        if mic.ndim != 2 or mic.shape[0] != _N_MIC or music.ndim != 2 or music.shape[0] != _N_MUSIC:
            raise ChannelError(f"mic {mic.shape} and music {music.shape} must be (4, samples) and "
                               "(2, samples), channels first.")
        n = mic.shape[1]
        if music.shape[1] != n or n == 0 or n % HOP:
            raise ChannelError(f"mic and music hold {n} and {music.shape[1]} samples; both need the "
                               f"same positive multiple of the {HOP}-sample frame.")
        frames, transfer = [], None
        step = 100 * HOP  # bounds the cross-spectra held at once to ~50 MB
        for at in range(0, n, step):
            part, transfer = self._chunk(mic[:, at : at + step], music[:, at : at + step])
            frames.append(part)
        return ChannelFrames(np.concatenate(frames, axis=1), transfer)

    def _chunk(self, mic: np.ndarray, music: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self._state
        audio = np.concatenate([s.tail, np.concatenate([mic, music])], axis=1)
        s.tail = audio[:, -(SUB_FFT - SUB_HOP):].copy()
        count = mic.shape[1] // SUB_HOP
        sub = np.lib.stride_tricks.sliding_window_view(audio, SUB_FFT, axis=1)[:, ::SUB_HOP][:, :count]
        spectra = scipy.fft.rfft(sub * self._window, axis=-1)[..., self._band]  # (6, count, bins)
        y, m = spectra[:_N_MIC], spectra[_N_MIC:]
        products = np.concatenate([
            (y[:, None] * m[None].conj()).reshape(len(PAIRS), count, -1),  # S_ym[c, s]: c-major
            m * m.conj(), m[:1] * m[1:].conj()], axis=0).transpose(1, 2, 0)  # (count, bins, 11)
        # Exponential average over sub-frames, carried across pushes.
        sums, _ = scipy.signal.lfilter([1.0], [1.0, -self._decay], products, axis=0,
                                       zi=(self._decay * s.spectra)[None])
        weights = s.weight * self._decay ** np.arange(1, count + 1) + \
            (1 - self._decay ** np.arange(1, count + 1)) / (1 - self._decay)
        s.spectra, s.weight = sums[-1], weights[-1]
        ends = np.arange(1, count, 2)  # the sub-frame ending with each frame
        spectra_at = sums[ends] / weights[ends, None, None]
        transfer = self._transfer(spectra_at)  # (frames, bins, 4, 2)
        pairs = transfer.transpose(0, 1, 3, 2).reshape(len(ends), -1, len(PAIRS))  # speaker-major
        # How well each bin was excited behind the estimate: music with a sparse spectrum (a
        # piano's harmonics) leaves bins in between that the estimate only guesses.
        excitation = (spectra_at[..., 8].real + spectra_at[..., 9].real) / 2
        confidence = excitation / (excitation + _EXCITATION * excitation.mean(axis=1, keepdims=True) + 1e-30)
        # The newest sub-frame's music alone: the averaged spectra remember music for seconds.
        valid = self._valid(np.mean(products[ends, :, 8].real + products[ends, :, 9].real, axis=1) / 2)
        weight = valid[:, None] * confidence
        background, background_weight, frames = self._background(pairs * weight[..., None], weight, valid)
        features = np.zeros((len(ends), len(CHANNELS), N_TAPS))
        features[:, len(PAIRS) : 2 * len(PAIRS)] = FAR_FLOOR_DB
        use = np.flatnonzero(valid & (frames >= self._settle))
        if len(use):
            room = background[use] / np.maximum(background_weight[use], 1e-12)[..., None]
            change = (pairs[use] - room) * confidence[use, :, None]
            features[use] = self._features(self._taps(change), self._taps(room[..., ::_N_MIC]))
        return features.transpose(1, 0, 2).astype(np.float32), transfer[-1]

    def _valid(self, power: np.ndarray) -> np.ndarray:
        """Which frames have music to estimate from; updates the running music level."""
        s = self._state
        valid = np.zeros(len(power), bool)
        for i, p in enumerate(power):
            level = s.level / s.level_weight if s.level_weight else 0.0
            valid[i] = p > _ABSOLUTE_SILENCE and p > _SILENCE * level
            if valid[i]:
                s.level = self._frame_decay * s.level + p
                s.level_weight = self._frame_decay * s.level_weight + 1
        return valid

    def _background(self, weighted: np.ndarray, weight: np.ndarray, valid: np.ndarray):
        """The running background sums *before* each frame (so a frame is compared with the
        room as it was), and the state after the chunk."""
        s = self._state
        d = self._frame_decay
        after = [scipy.signal.lfilter([1.0], [1.0, -d], x, axis=0, zi=d * x0[None])[0]
                 for x, x0 in ((weighted, s.background), (weight, s.background_weight),
                               (valid.astype(float), np.array(s.frames)))]
        before = [np.concatenate([x0[None], x[:-1]]) for x, x0 in
                  zip(after, (s.background, s.background_weight, np.array(s.frames)))]
        s.background, s.background_weight, s.frames = after[0][-1], after[1][-1], float(after[2][-1])
        return before

    def _transfer(self, spectra: np.ndarray) -> np.ndarray:
        """H = S_ym (S_mm + lambda I)^-1 per frame and bin: (frames, bins, 11) -> (frames, bins, 4, 2)."""
        s_ym = spectra[..., :8].reshape(spectra.shape[:2] + (_N_MIC, _N_MUSIC))
        ll, rr, lr = spectra[..., 8].real, spectra[..., 9].real, spectra[..., 10]
        mean = (ll + rr) / 2
        reg = self.settings.regularisation * mean + 1e-30
        a, d = ll + reg, rr + reg
        det = a * d - np.abs(lr) ** 2
        # inv([[a, lr], [conj(lr), d]]) = [[d, -lr], [-conj(lr), a]] / det
        inverse = np.stack([np.stack([d, -lr], -1), np.stack([-lr.conj(), a + 0j], -1)], -2) / det[..., None, None]
        return s_ym @ inverse

    def _taps(self, response: np.ndarray) -> np.ndarray:
        """Impulse responses at ``_BG_LAGS``: (frames, bins, pairs) -> (frames, pairs, lags)."""
        full = np.zeros(response.shape[:1] + (SUB_FFT // 2 + 1, response.shape[2]), complex)
        full[:, self._band] = response * self._taper[:, None]
        taps = scipy.fft.irfft(full, n=SUB_FFT, axis=1)
        return taps[:, _BG_LAGS % SUB_FFT].transpose(0, 2, 1)

    @staticmethod
    def _features(change: np.ndarray, room_w: np.ndarray) -> np.ndarray:
        """(frames, 8, lags) taps of the change and (frames, 2, lags) of the room's W responses
        -> (frames, 17, 128) features of valid, settled frames."""
        out = np.zeros((len(change), len(CHANNELS), N_TAPS))
        span = N_TAPS * _FAR_BIN
        for i in range(len(change)):
            for speaker, lag in enumerate(_direct_paths(room_w[i])):
                pairs = slice(speaker * _N_MIC, (speaker + 1) * _N_MIC)
                diff = change[i, pairs, lag - _PRE : lag - _PRE + span] / abs(room_w[i, speaker, lag])
                out[i, pairs] = diff[:, :N_TAPS]
                energy = np.mean(diff.reshape(_N_MIC, N_TAPS, _FAR_BIN) ** 2, axis=-1)
                out[i, len(PAIRS) + speaker * _N_MIC : len(PAIRS) + (speaker + 1) * _N_MIC] = \
                    10 * np.log10(np.maximum(energy, 10 ** (FAR_FLOOR_DB / 10)))
        out[:, -1] = 1.0
        return out


_ALLOWED = np.flatnonzero((_BG_LAGS >= _LAG_MIN) & (_BG_LAGS <= _LAG_MAX))


def _direct_paths(room_w: np.ndarray) -> np.ndarray:
    """Index into ``_BG_LAGS`` of each speaker's strongest W tap within the lags searched:
    (2, lags) -> (2,)."""
    return _ALLOWED[np.argmax(np.abs(room_w[:, _ALLOWED]), axis=1)]


def channel_frames(mic: np.ndarray, music: np.ndarray, settings: ChannelSettings = ChannelSettings()) -> np.ndarray:
    """Channel features (17, N // 2400, 128) of one aligned recording, from its start."""
    return ChannelTracker(settings).push(mic, music).features


class ChannelStream:
    """Channel features of the live engine's overlapping windows: each call pushes only the
    audio since the previous window (a window skipped by the estimator is caught up from the
    newer window's own audio) and returns the newest 12 frames, (17, 12, 128)."""

    def __init__(self, settings: ChannelSettings = ChannelSettings()):
        self.tracker = ChannelTracker(settings)
        self._frames = np.zeros((len(CHANNELS), 0, N_TAPS), np.float32)
        self._end: int | None = None

    def window(self, mic: np.ndarray, music: np.ndarray, end_sample: int) -> np.ndarray:
        n = mic.shape[-1]
        new = None if self._end is None else end_sample - self._end
        if new is None or not 0 < new <= n or new % HOP:
            # The first window, or a jump past a whole window: the short-term estimate starts
            # afresh from this window's audio; the room's background is kept.
            self.tracker.restart()
            new = n
        frames = self.tracker.push(mic[:, n - new :], music[:, n - new :]).features
        self._frames = np.concatenate([self._frames, frames], axis=1)[:, -(n // HOP) :]
        self._end = end_sample
        return self._frames
