"""Does the curriculum climb, and does the KL regularizer cut rollbacks? A real run from T0 upward.

Two serial training runs (the whole loop in one process each: cells, replay, learner, the
curriculum controller with its validations) start from scratch on ``--start-tier`` with the same
seed and the same wall-clock budget, one with the KL regularizer at its configured weight and
one with it off, run side by side (one core each, so they share the machine alike).

Prints a table and, as its last line, JSON with, per variant: the highest tier reached,
promotions and rollbacks (and when each came: seconds and updates from the start, and to which
tier), the rollback rate (rollbacks per promotion: the method's ≈35 % without and ≈8 % with the
regularizer), env steps and updates. Each run directory gets curriculum.csv,
curriculum_events.jsonl, tiers.png and the training curves.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# this file's directory would shadow the `replay` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from graspfleet.config import ConfigError, load_owning  # noqa: E402
from graspfleet.sim.tiers import TIER_ORDER  # noqa: E402
from orchestrator.config import TrainConfig  # noqa: E402
from orchestrator.serial import train_serial  # noqa: E402


def run_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration of one run: ``--set`` overrides, then the keys this bench sets itself
    (an override of one of those is refused with the flag to use)."""
    kl_weight = args.kl_weight if args.kl_weight is not None else 0.0
    owned = {  # key: (value, what to use instead of --set)
        "tier": (args.start_tier, "use --start-tier"),
        "budget.env_steps": (10**9, "its budget is --minutes"),
        "budget.seconds": (args.minutes * 60, "use --minutes"),
        "seed": (args.seed, "use --seed"),
        "learning.device": ("cpu", "it runs on the CPU"),
        "curriculum.enabled": (True, "it measures the curriculum"),
        "curriculum.kl_weight": (kl_weight, "it runs the default weight and 0 side by side"),
    }
    return load_owning(TrainConfig, args.set, owned)


def one_run(args: argparse.Namespace, config: TrainConfig) -> dict[str, object]:
    """The child: one training run of ``config`` with the curriculum; its summary."""
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    start = time.perf_counter()
    with contextlib.suppress(KeyboardInterrupt):
        report = train_serial(config, args.run_dir)
    with (args.run_dir / "curriculum.csv").open(newline="") as handle:
        history = list(csv.DictReader(handle))
    promotions = sum(r["event"] == "promotion" for r in history)
    rollbacks = sum(r["event"] == "rollback" for r in history)
    highest = max(int(r["tier_index"]) for r in history)
    return {
        "kl_weight": config.curriculum.kl_weight,
        "highest_tier": TIER_ORDER[highest],
        "final_tier": history[-1]["tier"],
        "promotions": promotions,
        "rollbacks": rollbacks,
        "tier_changes": [
            {"seconds": float(r["seconds"]), "updates": int(r["updates"]), "event": r["event"], "tier": r["tier"]}
            for r in history
            if r["event"] in ("promotion", "rollback")
        ],
        "rollback_rate": rollbacks / promotions if promotions else None,
        "regressions": sum(r["event"] == "regression" for r in history),
        "env_steps": report.env_steps,
        "updates": report.updates,
        "seconds": round(time.perf_counter() - start, 1),
        "run_dir": str(args.run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start-tier", default="T0")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of each run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-curriculum"))
    parser.add_argument("--set", action="append", default=[], help="config override key.path=value")
    parser.add_argument("--kl-weight", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        config = run_config(args)  # a bad --set is refused here, before any child starts
    except ConfigError as error:
        parser.error(str(error))
    if args.child:
        print(json.dumps(one_run(args, config)))
        return

    default_kl = TrainConfig().curriculum.kl_weight
    variants = {"with_kl": default_kl, "without_kl": 0.0}
    children = {}
    for name, weight in variants.items():
        command = [sys.executable, __file__, "--child", "--kl-weight", str(weight)]
        command += ["--start-tier", args.start_tier, "--minutes", str(args.minutes), "--seed", str(args.seed)]
        command += ["--run-dir", str(args.run_dir / name), *(f"--set={s}" for s in args.set)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core each: the two runs share the machine alike
        children[name] = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    results = {}
    for name, child in children.items():
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"{name}: the run failed (exit {child.returncode})")
        results[name] = json.loads(out.strip().splitlines()[-1])
    print(f"{'':12} {'highest':>8} {'final':>6} {'promotions':>11} {'rollbacks':>10} {'rate':>6} {'env steps':>10}")
    for name, r in results.items():
        rate = "–" if r["rollback_rate"] is None else f"{r['rollback_rate']:.0%}"
        print(
            f"{name:12} {r['highest_tier']:>8} {r['final_tier']:>6} {r['promotions']:>11} {r['rollbacks']:>10} "
            f"{rate:>6} {r['env_steps']:>10,}"
        )
    print(json.dumps({"start_tier": args.start_tier, "minutes": args.minutes, **results}))


if __name__ == "__main__":
    main()
