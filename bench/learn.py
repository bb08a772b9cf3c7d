"""Does it learn? Train on a tier from scratch and report time and steps to the target success.

The serial loop (one process: the actor's cells, the replay table and the learner take turns,
so the learner's update rate is what this 2-core machine gives one process) trains from
randomly initialized networks, with the scripted expert's demonstrations mixed into the batches
(``learning.demonstrations``, the method's behaviour-cloning warm start). Every ``--evaluate-every``
updates the deterministic policy is evaluated on ``--episodes`` fresh episodes. The run goes on for
``--after-target`` more evaluations once one reaches ``--target`` (to show whether it stays
there), or stops at the time budget.

Prints, as its last line, JSON with the wall-clock seconds and environment steps to the target
(null when it was not reached), the evaluations after it and whether they held it (``stable``: at
least ``--stable-evaluations`` of them, none below ``--stable-floor``, their median at the
target or above), the final success rate with its
Wilson interval, and the best-evaluated policy (the run's ``best_policy.safetensors``)
re-evaluated on ``--fresh-episodes`` episodes it was not selected on, since the best of many
noisy evaluations overstates its own policy. The run directory gets metrics.csv,
evaluations.csv, best_policy.* and training_curves.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

# this file's directory would shadow the `replay` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from actors.evaluation import evaluate  # noqa: E402
from graspfleet.config import ConfigError, load_owning  # noqa: E402
from graspfleet.sim.tiers import get_tier  # noqa: E402
from orchestrator.config import LearningConfig, TrainConfig  # noqa: E402
from orchestrator.serial import train_serial  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="T0")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget")
    parser.add_argument("--target", type=float, default=0.9, help="evaluation success to reach")
    parser.add_argument("--after-target", type=int, default=4, help="evaluations to run once it is reached")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per evaluation")
    parser.add_argument("--fresh-episodes", type=int, default=200, help="episodes re-evaluating the best policy")
    parser.add_argument("--evaluate-every", type=int, default=750, help="learner updates between evaluations")
    parser.add_argument("--updates-per-step", type=float, default=LearningConfig.updates_per_step)
    parser.add_argument("--demonstrations", type=int, default=LearningConfig.demonstrations)
    parser.add_argument(
        "--stable-floor", type=float, default=0.85, help="lowest evaluation a stable run has after the target"
    )
    parser.add_argument("--stable-evaluations", type=int, default=8, help="evaluations after the target that judge it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-learn"))
    parser.add_argument("--set", action="append", default=[], help="config override key.path=value")
    args = parser.parse_args()
    owned = {  # key: (value, what to use instead of --set)
        "tier": (args.tier, "use --tier"),
        # one tier throughout: this measures learning, not the curriculum (bench/curriculum.py does)
        "curriculum.enabled": (False, "it trains one tier (bench/curriculum.py runs the curriculum)"),
        "budget.env_steps": (10**9, "its budget is --minutes"),
        "budget.seconds": (args.minutes * 60, "use --minutes"),
        "evaluation.every": (args.evaluate_every, "use --evaluate-every"),
        "evaluation.episodes": (args.episodes, "use --episodes"),
        "learning.updates_per_step": (args.updates_per_step, "use --updates-per-step"),
        "learning.demonstrations": (args.demonstrations, "use --demonstrations"),
        "learning.device": ("cpu", "it runs on the CPU"),
        "seed": (args.seed, "use --seed"),
    }
    try:
        config = load_owning(TrainConfig, args.set, owned)
    except ConfigError as error:
        parser.error(str(error))
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)

    class TargetReached(Exception):
        pass

    evaluations: list[dict[str, float]] = []
    progress: dict[str, float] = {}

    def show(row: dict[str, float]) -> None:
        if "episodes" in row:
            progress.update(row)
        if "eval_success_rate" in row:
            evaluations.append({k.removeprefix("eval_"): v for k, v in row.items()})
            print(
                f"[{row['eval_seconds']:7.0f} s] eval after {row['eval_env_steps']:,.0f} env steps, "
                f"{row['eval_updates']:,.0f} updates: success {row['eval_success_rate']:.0%} "
                f"[{row['eval_ci_low']:.2f}, {row['eval_ci_high']:.2f}]",
                flush=True,
            )
            first = next((i for i, e in enumerate(evaluations) if e["success_rate"] >= args.target), None)
            if first is not None and len(evaluations) - 1 - first >= args.after_target:
                raise TargetReached

    start = time.perf_counter()
    with contextlib.suppress(TargetReached):
        train_serial(config, args.run_dir, on_progress=show)
    seconds = time.perf_counter() - start
    best = None
    if (args.run_dir / "best_policy.json").exists():
        selected = json.loads((args.run_dir / "best_policy.json").read_text())
        fresh = evaluate(
            args.run_dir / "best_policy.safetensors",
            config.cell,
            get_tier(args.tier),
            args.fresh_episodes,
            seed=config.seed + 30_000,  # the run's evaluations use seed + 20,000
            network=config.network,
            action=config.action,
        )
        best = {
            "updates": int(selected["updates"]),
            "selected_success_rate": selected["success_rate"],
            "fresh_success_rate": fresh.success_rate,
            "fresh_interval": [round(v, 4) for v in fresh.interval],
            "fresh_episodes": args.fresh_episodes,
        }
    first = next((i for i, e in enumerate(evaluations) if e["success_rate"] >= args.target), None)
    reached = evaluations[first] if first is not None else None
    final = evaluations[-1] if evaluations else None
    after = [e["success_rate"] for e in evaluations[first + 1 :]] if first is not None else []
    stability = {
        "evaluations_after_target": len(after),
        "lowest": min(after, default=None),
        "median": statistics.median(after) if after else None,
        "stable": len(after) >= args.stable_evaluations
        and min(after) >= args.stable_floor
        and statistics.median(after) >= args.target,
    }
    print(
        json.dumps(
            {
                "tier": args.tier,
                "target_success": args.target,
                "reached": reached is not None,
                "seconds_to_target": reached["seconds"] if reached else None,
                "env_steps_to_target": int(reached["env_steps"]) if reached else None,
                "updates_to_target": int(reached["updates"]) if reached else None,
                "success_after_target": after,
                "stability": stability,
                "evaluations": [e["success_rate"] for e in evaluations],
                "demonstration_episodes": config.learning.demonstrations,
                "training_episodes": int(progress.get("episodes", 0)),
                "interventions": int(progress.get("interventions", 0)),
                "final_success_rate": final["success_rate"] if final else None,
                "final_interval": [final["ci_low"], final["ci_high"]] if final else None,
                "best_policy": best,
                "evaluation_episodes": args.episodes,
                "seconds": round(seconds, 1),
                "env_steps": int(final["env_steps"]) if final else 0,
                "updates": int(final["updates"]) if final else 0,
                "seed": args.seed,
                "overrides": args.set,
            }
        )
    )


if __name__ == "__main__":
    main()
