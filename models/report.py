"""The benchmark report: markdown tables in the paper's layout, what they show, and figures.

Table 1: methods and controls x settings (RMSE, MAE, PCKh@0.5), mean ± std over the folds
and seeds run (a single run shows its value alone), with the epochs each row trained and
why it stopped. Table 2: the BGM2Pose ablations on settings (a) and (b), the same way.
Table 3: per-part errors (MAE and PCKh@0.5 of arm, leg, body). "What this shows" is written
from the numbers: the lowest MAE, each method against the mean pose, the shuffled control
against the mean pose, the ablations against the full model and how the runs stopped.
Figures: learning curves (train and validation pose loss per epoch of each trained row),
PCKh curves (thresholds 0.5..2.0 head lengths) and predicted-vs-true skeletons of BGM2Pose,
per setting. The header names the command, the data and the rig it was made on, and the
wall time summed over every invocation that ran jobs (``grid.read_log``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bgm2pose.models.data import WindowSet
from bgm2pose.models.figures import learning_curves, pck_curves, skeletons
from bgm2pose.models.grid import clock, read_log
from bgm2pose.models.metrics import PCKH_KS
from bgm2pose.models.protocol import ABLATION_SETTINGS, CONTROLS, ROWS, SETTING_NAMES, Plan, aggregate
from bgm2pose.sensing.session import find_sessions, read_info

HEAD = ("rmse", "mae", "pckh@0.5")
METHODS = [r.label for r in ROWS if r.group == "method"]
CONTROL_ROWS = [r.label for r in ROWS if r.group == "control"]
ABLATIONS = ["BGM2Pose"] + [r.label for r in ROWS if r.group == "ablation"]
SHUFFLED = "BGM2Pose, shuffled audio"


def _cell(stats: dict, metric: str) -> str:
    mean, std, n = stats[metric]
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _stops(runs: list[dict]) -> str:
    """Epochs run and the stop reason of a cell's runs: "14 plateau", "9-14 plateau",
    "9-30: 2 plateau, 1 cap"."""
    trained = [r["training"] for r in runs if r.get("training")]
    if not trained:
        return "–"
    epochs = sorted(t["epochs_run"] for t in trained)
    span = str(epochs[0]) if epochs[0] == epochs[-1] else f"{epochs[0]}-{epochs[-1]}"
    reasons = sorted({t["stop"] for t in trained})
    if len(reasons) == 1:
        return f"{span} {reasons[0]}"
    return f"{span}: " + ", ".join(f"{sum(t['stop'] == s for t in trained)} {s}" for s in reasons)


def _table(agg: dict, by_cell: dict, labels: list[str], settings: list[str]) -> list[str]:
    header = ("| method | " + " | ".join(f"({s}) {m}" for s in settings for m in ("RMSE", "MAE", "PCKh"))
              + f" | epochs, stop ({' / '.join(settings)}) |")
    lines = [header, "|---" * (2 + 3 * len(settings)) + "|"]
    for label in (label for label in labels if any((s, label) in agg for s in settings)):
        cells = [(_cell(agg[(s, label)], m) if (s, label) in agg else "–") for s in settings for m in HEAD]
        stops = " / ".join(_stops(by_cell.get((s, label), [])) for s in settings)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {stops} |")
    return lines


def _parts_table(agg: dict, settings: list[str]) -> list[str]:
    lines = ["| setting | method | " + " | ".join(f"{p} MAE | {p} PCKh" for p in ("arm", "leg", "body")) + " |",
             "|---|---|" + "---|" * 6]
    for s in settings:
        for label in METHODS + CONTROL_ROWS:
            if (s, label) in agg:
                a = agg[(s, label)]
                lines.append(f"| ({s}) | {label} | " + " | ".join(
                    f"{_cell(a, f'{p}/mae')} | {_cell(a, f'{p}/pckh@0.5')}" for p in ("arm", "leg", "body")) + " |")
    return lines


def _versus(value: tuple, reference: tuple) -> str:
    """A mean MAE against the mean pose's, with whether the gap exceeds the spread when
    there is one."""
    (mean, std, n), (ref, ref_std, _) = value, reference
    text = f"{mean:.3f} = {mean / ref:.2f}x the mean pose's {ref:.3f}"
    if n > 1:
        text += ", a gap larger than the spread" if abs(mean - ref) > max(std, ref_std) else ", a gap within the spread"
    return text


def _setting_findings(agg: dict, s: str) -> str:
    mae = {label: agg[(s, label)]["mae"] for label in METHODS if (s, label) in agg}
    mean_pose = agg.get((s, "mean pose"), {}).get("mae")
    if not mae or mean_pose is None:
        return f"- ({s}): no method and mean pose results to compare."
    ranked = sorted(mae, key=lambda label: mae[label][0])
    best = ranked[0]
    text = f"- ({s}) {SETTING_NAMES[s]}: lowest MAE **{best}**, {_versus(mae[best], mean_pose)}."
    if "BGM2Pose" in mae and best != "BGM2Pose":
        text += (f" BGM2Pose ranks {ranked.index('BGM2Pose') + 1} of {len(ranked)}: "
                 f"{mae['BGM2Pose'][0]:.3f}, {mae['BGM2Pose'][0] - mae[best][0]:+.3f} against {best}.")
    below = [label for label in ranked if mae[label][0] < mean_pose[0]]
    text += f" Below the mean pose: {'; '.join(below) or 'none'}."
    above = [label for label in ranked if label not in below]
    text += f" Not below: {'; '.join(above)}." if above else ""
    if (s, SHUFFLED) in agg:
        shuffled = agg[(s, SHUFFLED)]["mae"]
        verdict = ("at least the mean pose's, as a control without the audio's pairing should be"
                   if shuffled[0] >= mean_pose[0] else
                   "below the mean pose's: something other than the pairing of sound and pose is learned")
        text += f" Shuffled audio: {_versus(shuffled, mean_pose)}; {verdict}."
    return text


def _ablation_findings(agg: dict, s: str) -> str | None:
    full = agg.get((s, "BGM2Pose"), {}).get("mae")
    rows = {label: agg[(s, label)]["mae"][0] for label in ABLATIONS[1:] if (s, label) in agg}
    if full is None or not rows:
        return None
    ordered = sorted(rows, key=rows.get, reverse=True)
    changes = "; ".join(f"{label} {rows[label] - full[0]:+.3f}" for label in ordered)
    return f"- ({s}) ablations, MAE against the full BGM2Pose ({full[0]:.3f}): {changes}."


def _stop_findings(results: list[dict]) -> str:
    trained = [r for r in results if r.get("training")]
    capped = sorted({f"{r['row']} ({r['setting']})" for r in trained if r["training"]["stop"] != "plateau"})
    text = f"- Stopping: {len(trained) - len(capped)} of {len(trained)} trained runs stopped on a validation plateau"
    if capped:
        return text + f"; at the epoch cap, so perhaps not converged: {'; '.join(capped)}."
    return text + "; none at the epoch cap."


def findings(agg: dict, results: list[dict], settings: list[str], runs: int) -> list[str]:
    """The "what this shows" bullets, from the numbers only."""
    lines = [_setting_findings(agg, s) for s in settings]
    lines += [line for s in settings if s in ABLATION_SETTINGS if (line := _ablation_findings(agg, s))]
    lines.append(_stop_findings(results))
    if runs == 1:
        lines.append("- One run per cell (one fold, one seed): there is no spread to judge these differences "
                     "by; the full protocol's folds and seeds give one.")
    return lines


def describe_rig(data: Path) -> str:
    """Which rig the data set was made on, from its sessions' ``session.toml``."""
    if data.suffix.lower() == ".csv":
        return "the AMPL release (recorded by the paper's authors; no rig settings in it)"
    infos = [read_info(folder) for folder in find_sessions(data)]
    rigs = {json.dumps(info.rig, sort_keys=True) for info in infos}
    tools = sorted({str(info.provenance.get("tool", "no tool named")) for info in infos})
    if len(rigs) > 1:
        return f"{len(rigs)} different rigs across {len(infos)} sessions (made by: {', '.join(tools)})"
    rig = infos[0].rig
    keys = ("body_paths", "room_size", "rt60", "speaker_directivity_db", "speaker_gain_db")
    settings = ", ".join(f"{k} {rig[k]}" for k in keys if k in rig) or "no rig settings recorded"
    return f"one rig for all {len(infos)} sessions (made by: {', '.join(tools)}): {settings}"


def _run_summary(out: Path, results: list[dict], command: str) -> str:
    log = read_log(out)
    others = sorted({e["command"] for e in log} - {command})
    parts = "; ".join(f"{e['jobs']} jobs in {clock(e['seconds'])} on {e['workers']} workers, shard {e['shard']}"
                      for e in log)
    devices = sorted({f"{r.get('device', 'cpu')} x {r.get('world', 1)}" for r in results})
    return (f"Wall time of the run: **{clock(sum(e['seconds'] for e in log))}** over {len(log)} invocation(s) "
            f"({parts}); {clock(sum(r['seconds'] for r in results))} of job time in all. Trained on: "
            f"{', '.join(devices)} (device x DDP processes)."
            + (f" Jobs also run by: {'; '.join(f'`{c}`' for c in others)}." if others else ""))


def _figures(out: Path, agg: dict, results: list[dict], settings: list[str]) -> list[str]:
    lines = []
    thresholds = [k * 0.5 for k in PCKH_KS]
    for s in settings:
        first = min((r for r in results if r["setting"] == s), key=lambda r: (r["test_subject"], r["seed"]))
        curves = {r["row"]: r["training"] for r in results if r["setting"] == s and r.get("training")
                  and (r["test_subject"], r["seed"]) == (first["test_subject"], first["seed"])}
        curves = {label: curves[label] for label in METHODS + ABLATIONS[1:] + CONTROL_ROWS if label in curves}
        if curves:
            learning_curves(curves, out / f"learning_{s}.png",
                            f"({s}) {SETTING_NAMES[s]}, held-out {first['test_subject']}, seed {first['seed']}: pose "
                            "MSE per epoch, train (blue) and validation (orange); dashed: best epoch")
            lines.append(f"![learning curves ({s})](learning_{s}.png)")
        pck = {label: [agg[(s, label)][f"pckh@{t:.1f}"][0] for t in thresholds]
               for label in METHODS + CONTROL_ROWS if (s, label) in agg}
        pck_curves(pck, thresholds, out / f"pckh_{s}.png", f"PCKh, ({s}) {SETTING_NAMES[s]}")
        lines.append(f"![PCKh curves ({s})](pckh_{s}.png)")
        example = next((r for r in results if r["setting"] == s and r["row"] == "BGM2Pose"), None)
        if example:
            pairs = [(np.asarray(p)[6], np.asarray(t)[6]) for p, t in
                     zip(example["examples"]["pred"], example["examples"]["truth"])]
            skeletons(pairs, out / f"skeletons_{s}.png",
                      f"BGM2Pose ({s}), held-out {example['test_subject']}: red predicted, black true (frame 7 of 12)")
            lines.append(f"![skeletons ({s})](skeletons_{s}.png)")
    return lines


def write_report(out: Path, plan: Plan, results: list[dict], *, data: Path, windows: WindowSet,
                 command: str) -> Path:
    """Write README.md, results.json and the PNGs into ``out``; returns the README path."""
    out.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: r["key"])
    agg = aggregate(results)
    by_cell: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        by_cell.setdefault((r["setting"], r["row"]), []).append(r)
    settings = [s.key for s in plan.settings]
    runs = max((v["mae"][2] for v in agg.values()), default=0)
    lines = [f"# Benchmark: the BGM2Pose protocol on {data.name}", "",
             f"Command: `{command}`", "",
             f"Data: {windows.describe()}; {describe_rig(data)}.", "",
             _run_summary(out, results, command), "",
             f"Folds (held-out subjects): {', '.join(plan.folds)}; seeds: {', '.join(map(str, plan.seeds))}; "
             f"up to {runs} runs per cell (mean ± std over folds x seeds when more than one). Budget, the same "
             f"for every trained row: {json.dumps(plan.describe()['budget'])}: each run stops when the pose loss "
             "of the validation subject (the last training subject in sorted order, never the test subject) has "
             "not improved for `patience` epochs, or at the `epochs` cap, keeping the average of the 3 epochs "
             "up to the best.", "",
             "Settings: " + "; ".join(f"({s.key}) {s.name}: train {', '.join(s.train_tracks)} -> test "
                                      f"{', '.join(s.test_tracks)}" for s in plan.settings) + ".", "",
             "Controls:", "", *[f"- **{label}**: {text}" for label, text in CONTROLS.items()], "",
             "Units: normalised (hip-spine = 1). PCKh = PCKh@0.5.", "",
             "## What this shows", "", *findings(agg, results, settings, runs), "",
             "## Table 1: methods and controls", "", *_table(agg, by_cell, METHODS + CONTROL_ROWS, settings), "",
             "## Table 2: ablations of BGM2Pose", "",
             *_table(agg, by_cell, ABLATIONS, [s for s in settings if s in ABLATION_SETTINGS]), "",
             "## Table 3: per-part errors (MAE / PCKh@0.5)", "", *_parts_table(agg, settings), "",
             "## Figures", "", *_figures(out, agg, results, settings)]
    (out / "results.json").write_text(json.dumps({"plan": plan.describe(), "runs": results}, indent=1) + "\n")
    readme = out / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    return readme
