"""The learner's update, A/B: SAC updates per second of config variants against the defaults.

Each variant is a learner built from the default run config with ``--variant NAME:KEY=VALUE,…``
overrides (dotted keys of ``graspfleet config``), updating on the same random batch of the real
observation shapes (the replay rows plus, as in a run with demonstrations, the demonstration
rows). Variants run in alternating blocks of ``--block`` updates in this one process, so a
machine busy with something else slows all of them alike; a variant's figure is the median of
its blocks' milliseconds per update. Ratios are updates/s over the defaults'.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# this file's directory would shadow the `replay` package: it goes last (for bench/e2e.py's helper)
BENCH = Path(__file__).resolve().parent
sys.path[:] = [*(p for p in sys.path if Path(p or ".").resolve() != BENCH), str(BENCH)]

import torch  # noqa: E402
from e2e import random_batch  # noqa: E402

from graspfleet.config import load  # noqa: E402
from orchestrator.config import TrainConfig  # noqa: E402
from orchestrator.learning import make_learner  # noqa: E402

DEFAULT_VARIANTS = (
    "target_latent:sac.next_action_latent=target",
    "actor_every_2:sac.actor_update_every=2",
    "both:sac.next_action_latent=target,sac.actor_update_every=2",
    "bf16_encoder:sac.bf16_encoder=true",
    "bf16_and_both:sac.bf16_encoder=true,sac.next_action_latent=target,sac.actor_update_every=2",
    "ik_penalty:sac.reachability_weight=1.0",
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    return name, [o for o in overrides.split(",") if o]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=None, help="NAME:KEY=VALUE,… (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--block", type=int, default=8, help="updates per block")
    parser.add_argument("--rounds", type=int, default=6, help="blocks of each variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [("defaults", []), *(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))]
    torch.manual_seed(0)
    learners, batches = {}, {}
    for name, overrides in variants:
        config = load(TrainConfig, None, [*overrides, "learning.device=cpu"])
        learners[name] = make_learner(config, device="cpu")
        batches[name] = random_batch(config, config.learning.batch_size)
        for _ in range(2):  # allocator and oneDNN primitive caches warm
            learners[name].update(batches[name])
    blocks: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(args.rounds):
        for name, _ in variants:
            start = time.perf_counter()
            for _ in range(args.block):
                learners[name].update(batches[name])
            blocks[name].append((time.perf_counter() - start) / args.block * 1000)
    median = {name: statistics.median(ms) for name, ms in blocks.items()}
    for name, overrides in variants:
        print(
            f"{name:>16}: {median[name]:6.1f} ms/update, {1000 / median[name]:5.1f} updates/s, "
            f"{median['defaults'] / median[name]:.2f}x the defaults  {' '.join(overrides)}"
        )
    print(
        json.dumps(
            {
                "threads": args.threads,
                "batch_size": TrainConfig().learning.batch_size,
                "variants": {
                    name: {
                        "overrides": overrides,
                        "ms_per_update": round(median[name], 2),
                        "updates_per_s": round(1000 / median[name], 2),
                        "ratio_to_defaults": round(median["defaults"] / median[name], 3),
                        "blocks_ms": [round(ms, 1) for ms in blocks[name]],
                    }
                    for name, overrides in variants
                },
            }
        )
    )


if __name__ == "__main__":
    main()
