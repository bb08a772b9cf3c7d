"""PNG training curves from a run directory's CSV files (matplotlib, no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a numeric CSV written by training (empty when the file is missing)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def plot_training_curves(run_dir: Path, title: str = "graspfleet training") -> Path | None:
    """Write ``training_curves.png`` from ``metrics.csv`` and ``evaluations.csv``; None without data.

    Panels: evaluation success (with its 95 % interval) and the actors' episode success against
    environment steps; critic loss and mean Q; α and policy entropy.
    """
    metrics = read_csv(run_dir / "metrics.csv")
    evaluations = read_csv(run_dir / "evaluations.csv")
    if not metrics and not evaluations:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    success = axes[0]
    if evaluations:
        steps = [r["env_steps"] for r in evaluations]
        success.plot(steps, [r["success_rate"] for r in evaluations], "o-", label="evaluation (deterministic)")
        success.fill_between(steps, [r["ci_low"] for r in evaluations], [r["ci_high"] for r in evaluations], alpha=0.2)
    if metrics and "success_rate" in metrics[0]:
        success.plot(
            [r["env_steps"] for r in metrics],
            [r["success_rate"] for r in metrics],
            label="actors, recent episodes (with noise)",
        )
    success.set(xlabel="environment steps", ylabel="success rate", ylim=(-0.02, 1.02), title="grasp success")
    success.legend(loc="upper left")
    if metrics:
        steps = [r["env_steps"] for r in metrics]
        critic = axes[1]
        critic.plot(steps, [r.get("critic_loss", float("nan")) for r in metrics], label="critic loss")
        critic.plot(steps, [r.get("q_mean", float("nan")) for r in metrics], label="mean Q")
        critic.set(xlabel="environment steps", title="critic")
        critic.legend()
        temperature = axes[2]
        temperature.plot(steps, [r.get("alpha", float("nan")) for r in metrics], label="α")
        temperature.set(xlabel="environment steps", ylabel="α", yscale="log", title="temperature and entropy")
        entropy = temperature.twinx()
        entropy.plot(steps, [r.get("entropy", float("nan")) for r in metrics], color="tab:orange", label="entropy")
        entropy.set(ylabel="policy entropy (nats)")
    figure.suptitle(title)
    figure.tight_layout()
    path = run_dir / "training_curves.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_tier_history(run_dir: Path, title: str = "curriculum") -> Path | None:
    """``tiers.png`` from ``curriculum.csv``: the tier against environment steps, with a marker at
    each promotion (▲), rollback (▼) and first-tier regression (×); None without a history."""
    path = run_dir / "curriculum.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    metrics = read_csv(run_dir / "metrics.csv")
    end = max([float(r["env_steps"]) for r in rows] + [r["env_steps"] for r in metrics])
    steps = [float(r["env_steps"]) for r in rows] + [end]
    tiers = [int(r["tier_index"]) for r in rows]
    figure, axis = plt.subplots(figsize=(9, 3.5))
    axis.step(steps, [*tiers, tiers[-1]], where="post", color="tab:blue", label="tier")
    markers = {"promotion": ("^", "tab:green"), "rollback": ("v", "tab:red"), "regression": ("x", "tab:orange")}
    for kind, (marker, colour) in markers.items():
        chosen = [r for r in rows if r["event"] == kind]
        if chosen:
            axis.scatter(
                [float(r["env_steps"]) for r in chosen],
                [int(r["tier_index"]) for r in chosen],
                marker=marker,
                color=colour,
                s=60,
                zorder=3,
                label=f"{kind} ({len(chosen)})",
            )
    names = sorted({(int(r["tier_index"]), r["tier"]) for r in rows})
    axis.set_yticks([i for i, _ in names], [n for _, n in names])
    axis.set(xlabel="environment steps", ylabel="tier", title=title)
    axis.legend(loc="upper left")
    figure.tight_layout()
    out = run_dir / "tiers.png"
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
