"""The benchmark report: markdown tables in the paper's format, goal checks and figures.

Table 1: methods and controls x settings (RMSE, MAE, PCKh@0.5), mean ± std over folds and
seeds. Table 2: the BGM2Pose ablations on settings (a) and (b). Table 3: per-part errors
(MAE and PCKh@0.5 of arm, leg, body). Figures: PCKh curves (k = 1..4, thresholds 0.5..2.0
head lengths) per setting, and predicted-vs-true skeletons of BGM2Pose per setting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bgm2pose.models.figures import pck_curves, skeletons
from bgm2pose.models.metrics import PCKH_KS
from bgm2pose.models.protocol import ROWS, SETTING_NAMES, Plan, aggregate

HEAD = ("rmse", "mae", "pckh@0.5")


def _cell(stats: dict, metric: str) -> str:
    mean, std, _ = stats[metric]
    return f"{mean:.3f} ± {std:.3f}"


def _table(agg: dict, labels: list[str], settings: list[str]) -> list[str]:
    header = "| method | " + " | ".join(f"({s}) {m}" for s in settings for m in ("RMSE", "MAE", "PCKh")) + " |"
    lines = [header, "|---" * (1 + 3 * len(settings)) + "|"]
    for label in labels:
        cells = [(_cell(agg[(s, label)], m) if (s, label) in agg else "–") for s in settings for m in HEAD]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _goals(agg: dict, settings: list[str]) -> list[str]:
    lines = []
    methods = [r.label for r in ROWS if r.group == "method"]
    for s in settings:
        mae = {label: agg[(s, label)]["mae"][0] for label in methods if (s, label) in agg}
        if not mae:
            continue
        best = min(mae, key=mae.get)
        mean_pose = agg.get((s, "mean pose"), {}).get("mae", (np.nan,))[0]
        shuffled = agg.get((s, "BGM2Pose, shuffled audio"), {}).get("mae", (np.nan,))[0]
        beaten = [m for m, v in mae.items() if v < mean_pose]
        lines.append(
            f"- ({s}) lowest MAE: **{best}** ({mae[best]:.3f}); BGM2Pose {mae.get('BGM2Pose', np.nan):.3f}. "
            f"Beat the mean-pose predictor ({mean_pose:.3f}): {', '.join(beaten) or 'none'}. "
            f"Shuffled-audio control {shuffled:.3f} vs real audio {mae.get('BGM2Pose', np.nan):.3f} "
            f"({'worse' if shuffled > mae.get('BGM2Pose', np.inf) else 'NOT worse'})."
        )
    return lines


def write_report(out: Path, plan: Plan, results: list[dict], header: str) -> Path:
    """Write README.md, results.json and the PNGs into ``out``; returns the README path."""
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(results)
    settings = [s.key for s in plan.settings]
    methods = [r.label for r in ROWS if r.group == "method"]
    controls = [r.label for r in ROWS if r.group == "control"]
    ablations = ["BGM2Pose"] + [r.label for r in ROWS if r.group == "ablation"]
    runs = max((v["mae"][2] for v in agg.values()), default=0)
    lines = [header, "",
             f"Folds (held-out subjects): {', '.join(plan.folds)}; seeds: {', '.join(map(str, plan.seeds))}; "
             f"up to {runs} runs per cell (mean ± std over folds x seeds). Budget, the same for every "
             f"trained row: {json.dumps(plan.describe()['budget'])}.", "",
             "Settings: " + "; ".join(f"({s.key}) {s.name}: train {', '.join(s.train_tracks)} -> test "
                                      f"{', '.join(s.test_tracks)}" for s in plan.settings) + ".", "",
             "Units: normalised (hip-spine = 1). PCKh = PCKh@0.5.", "",
             "## Table 1: methods and controls", "", *_table(agg, methods + controls, settings), "",
             "## Table 2: ablations of BGM2Pose", "",
             *_table(agg, ablations, [s for s in settings if s in ("a", "b")]), "",
             "## Table 3: per-part errors (MAE / PCKh@0.5)", "",
             "| setting | method | " + " | ".join(f"{p} MAE | {p} PCKh" for p in ("arm", "leg", "body")) + " |",
             "|---|---|" + "---|" * 6]
    for s in settings:
        for label in methods + controls:
            if (s, label) in agg:
                a = agg[(s, label)]
                lines.append(f"| ({s}) | {label} | " + " | ".join(
                    f"{a[f'{p}/mae'][0]:.3f} | {a[f'{p}/pckh@0.5'][0]:.3f}" for p in ("arm", "leg", "body")) + " |")
    lines += ["", "## Goals", "", *_goals(agg, settings), "", "## Figures", ""]
    thresholds = [k * 0.5 for k in PCKH_KS]
    for s in settings:
        curves = {label: [agg[(s, label)][f"pckh@{t:.1f}"][0] for t in thresholds]
                  for label in methods + controls if (s, label) in agg}
        pck_curves(curves, thresholds, out / f"pckh_{s}.png", f"PCKh, ({s}) {SETTING_NAMES[s]}")
        lines.append(f"![PCKh curves ({s})](pckh_{s}.png)")
        example = next((r for r in results if r["setting"] == s and r["row"] == "BGM2Pose"), None)
        if example:
            pairs = [(np.asarray(p)[6], np.asarray(t)[6]) for p, t in
                     zip(example["examples"]["pred"], example["examples"]["truth"])]
            skeletons(pairs, out / f"skeletons_{s}.png",
                      f"BGM2Pose ({s}), held-out {example['test_subject']}: red predicted, black true (frame 7 of 12)")
            lines.append(f"![skeletons ({s})](skeletons_{s}.png)")
    (out / "results.json").write_text(json.dumps({"plan": plan.describe(), "runs": results}, indent=1) + "\n")
    readme = out / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    return readme
