"""Moving reflections read from a delay line: the renderer's one compiled kernel.

Each path p reads row ``rows[p]`` of a float32 delay line at a delay that moves linearly
within each pose frame (cubic Lagrange interpolation at a moving read position, so Doppler
comes out right), weights it by its four B-format gains, which move linearly too, and adds
it into the four output channels.

Conventions (all in samples): output sample j of the block is frame sample ``offset + j``,
in frame row ``c = (offset + j) // frame_samples`` at ``k = (offset + j) % frame_samples``;
the path's delay there is ``delay[c, p] + (delay[c + 1, p] - delay[c, p]) * k / frame_samples``
and likewise its gains; the delay line holds output sample j with no delay at column
``origin + j``. Delays must keep the four interpolation points inside the line.

Numba, because the per-sample gather of ~364 paths is the renderer's inner loop and costs
~20 numpy passes over (paths x samples) arrays otherwise; ``cache=True`` keeps the
compiled code across processes. A path's delay moves by a few samples per frame at most, so
its reads come in runs of a few hundred samples with the same whole-sample delay: each run
reads contiguous memory, which the compiler vectorises (3x faster than a gather per sample).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def mix_moving_paths(line: np.ndarray, rows: np.ndarray, origin: int, delay: np.ndarray,
                     gains: np.ndarray, offset: int, frame_samples: int,
                     n: int) -> np.ndarray:
    """(4, n) float32 sum over paths: line (R, L) float32 C-contiguous, rows (P,) int, delay
    (C + 1, P) float64, gains (C + 1, 4, P) float32, C frame rows covering offset + n."""
    flat = line.ravel()
    out = np.zeros((4, n), np.float32)
    scale = 1.0 / frame_samples
    g0, gs = np.empty(4, np.float32), np.empty(4, np.float32)
    for c in range((offset + n - 1) // frame_samples + 1):
        first = c * frame_samples - offset  # output sample j of k = 0
        k_lo, k_hi = max(-first, 0), min(frame_samples, n - first)
        for p in range(rows.shape[0]):
            whole = np.floor(delay[c, p])
            at = rows[p] * line.shape[1] + origin + first - int(whole)
            rest = delay[c, p] - whole  # the delay past ``whole`` moves as rest + slope * k
            slope = (delay[c + 1, p] - delay[c, p]) * scale
            for ch in range(4):
                g0[ch] = gains[c, ch, p]
                gs[ch] = (gains[c + 1, ch, p] - gains[c, ch, p]) * scale
            k = k_lo
            while k < k_hi:
                # While rest + slope * k stays in (i - 1, i], sample k reads at at + k - i.
                i = int(np.ceil(rest + slope * k))
                if slope > 0:
                    end = int(np.floor((i - rest) / slope)) + 1
                elif slope < 0:
                    end = int(np.floor((i - 1 - rest) / slope)) + 1
                else:
                    end = k_hi
                end = min(max(end, k + 1), k_hi)
                a, j, e = at + k - i, first + k, first + end
                # Rows sliced one by one: a slice of a row is contiguous to the compiler.
                _add_run(flat[a - 1:a + end - k + 2], out[0, j:e], out[1, j:e], out[2, j:e],
                         out[3, j:e], k, i - rest - slope * k, slope, g0, gs)
                k = end
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _add_run(src: np.ndarray, w: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray,
             k0: int, fraction: float, slope: float, g0: np.ndarray, gs: np.ndarray) -> None:
    """Add one run of m samples to the channels w, x, y, z: sample t interpolates
    src[t:t + 4] at ``fraction - slope * t`` past src[t + 1], its gains g0 + gs * (k0 + t)."""
    # float32 counters: int64 -> float conversions do not vectorise.
    f0, df, kf = np.float32(fraction), np.float32(slope), np.float32(k0)
    for t in range(w.shape[0]):
        tf = np.float32(t)
        d = f0 - df * tf
        ym1, y0, y1, y2 = src[t], src[t + 1], src[t + 2], src[t + 3]
        # Cubic Lagrange through the four points, Horner form in d.
        c3 = (y2 - ym1) * np.float32(1.0 / 6.0) + (y0 - y1) * np.float32(0.5)
        c2 = (ym1 + y1) * np.float32(0.5) - y0
        c1 = y1 - y0 - c2 - c3
        v = ((c3 * d + c2) * d + c1) * d + y0
        k = kf + tf
        w[t] += (g0[0] + gs[0] * k) * v
        x[t] += (g0[1] + gs[1] * k) * v
        y[t] += (g0[2] + gs[2] * k) * v
        z[t] += (g0[3] + gs[3] * k) * v
