"""The live figures on the virtual rig are honest: its subject and music default to ones the
model's card says it never trained on, and choosing ones it did train on is said."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_subject_and_track_the_model_trained_on_are_each_one_warning(trained_model):
    r = subprocess.run([sys.executable, "-m", "bgm2pose.app.cli", "run", "--quiet", "--fast",
                        "--seconds", "1", "--model", str(trained_model), "--subject", "S1",
                        "--generated", "ambient-0000", "jazz-0003"],
                       capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2, r.stderr
    assert "trained on subject S1, so its live figures look better than they are" in warnings[0]
    assert "(subjects it has not seen: S4)" in warnings[0]
    assert "trained on the track ambient-0000" in warnings[1]  # jazz-0003 it has not heard
    assert "subject S1 and music ambient-0000, jazz-0003, some of which the model trained on" \
        in r.stderr
    assert "MAE of the mean pose" in r.stderr  # the summary has the bar beside the MAE
