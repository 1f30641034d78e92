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

Numba, because the per-sample gather of ~28 paths is the renderer's inner loop and costs
~20 numpy passes over (paths x samples) arrays otherwise; ``cache=True`` keeps the
compiled code across processes.
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
    n_paths = rows.shape[0]
    flat = line.ravel()
    start = rows * line.shape[1]
    out = np.empty((4, n), np.float32)
    scale = 1.0 / frame_samples
    # Per frame row and path: read position base + step * k, gains g0 + gs * k.
    base, step = np.empty(n_paths), np.empty(n_paths)
    g0, gs = np.empty((4, n_paths)), np.empty((4, n_paths))
    for c in range((offset + n - 1) // frame_samples + 1):
        first = c * frame_samples - offset  # output sample j of k = 0
        for p in range(n_paths):
            base[p] = origin + first - delay[c, p]
            step[p] = 1.0 - (delay[c + 1, p] - delay[c, p]) * scale
            for ch in range(4):
                g0[ch, p] = gains[c, ch, p]
                gs[ch, p] = (gains[c + 1, ch, p] - gains[c, ch, p]) * scale
        # Paths innermost, summed in registers: fastmath lets the compiler vectorise them.
        for j in range(max(first, 0), min(first + frame_samples, n)):
            k = j - first
            w = x = y = z = 0.0
            for p in range(n_paths):
                pos = base[p] + step[p] * k
                i = int(np.floor(pos))
                d = pos - i
                at = start[p] + i
                ym1, y0, y1, y2 = flat[at - 1], flat[at], flat[at + 1], flat[at + 2]
                # Cubic Lagrange through the four points, Horner form in d.
                c3 = (y2 - ym1) * (1.0 / 6.0) + (y0 - y1) * 0.5
                c2 = (ym1 + y1) * 0.5 - y0
                c1 = y1 - y0 - c2 - c3
                v = ((c3 * d + c2) * d + c1) * d + y0
                w += (g0[0, p] + gs[0, p] * k) * v
                x += (g0[1, p] + gs[1, p] * k) * v
                y += (g0[2, p] + gs[2, p] * k) * v
                z += (g0[3, p] + gs[3, p] * k) * v
            out[0, j], out[1, j], out[2, j], out[3, j] = w, x, y, z
    return out
