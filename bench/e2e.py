"""The whole system against its parts and a peer: ingest, learner updates, weight sync, RLlib.

Measured in one run, on this machine, one after another (nothing else running):

1. **bare cell**: one process steps a batch of grasp cells (hold actions, no policy, no
   pipeline) — the simulator's ceiling per core;
2. **one actor alone**: a ``SimActor`` in this process (one-thread policy inference,
   exploration, the action pipeline, a replay writer streaming to a real shard) — an actor's
   steps per CPU-second where it has a core to itself;
3. **plain SAC loop**: ``SACLearner.update`` on random tensors of the real observation shapes,
   same networks and batch size, nothing else in the process — the learner's ceiling, per second
   and per CPU-second; then the same learner **on replay**: batches sampled from two real shards
   holding what the lone actor streamed, no actor running — what the data plane costs the learner
   (both again with one intra-op thread, which the shards' work does not stall);
4. **graspfleet**: ``train_distributed`` with ``--actors`` Ray actors, 2 gRPC replay shards, a
   private Redis and the learner, for ``--seconds`` after warm-up. Reported: environment steps
   per second that reached replay, learner updates per second, weight-sync latency (a version's
   publication until every actor runs it, p50/p99), and the cores each role kept busy (CPU
   time from ``/proc``: learner, actors, shards, Redis, Ray's daemons); once with the learner on
   the cores its actors leave it (``learning.threads``' default on one machine), once on
   every core, and once with the same cells in ``--compact-actors`` actor processes (32 cells as
   2 × 16 rather than 8 × 4: fewer processes time-slicing a core, inference batched wider);
5. **RLlib SAC** (new API stack) on ``graspfleet/GraspCellCartesian-v0`` with a
   ``FlattenObservations`` env-to-module connector, default SAC networks, batch 256, one local
   env runner: environment steps and updates per second.

Ratios: learner updates/s over the plain loop's with every core and with the learner's own
thread count (and per CPU-second); ingest per actor
core — steps over the CPU time the actor processes used — over the bare cell's steps/s (and per
machine core, and the lone actor's); graspfleet over RLlib.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# this file's directory would shadow the `replay` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from graspfleet.actions.cartesian import cartesian_action_bounds  # noqa: E402
from graspfleet.config import replace_keys  # noqa: E402
from graspfleet.sim.batch import GraspCellBatch  # noqa: E402
from graspfleet.sim.tiers import get_tier  # noqa: E402
from graspfleet.spec import OBSERVATION_KEYS, observation_spec  # noqa: E402
from learner.sac import Batch  # noqa: E402
from orchestrator.config import LearningConfig, TrainConfig  # noqa: E402
from orchestrator.learning import make_learner  # noqa: E402
from orchestrator.serial import InMemoryWeights  # noqa: E402

CPU_ROLES = (
    ("actors", ("ray::ActorWorker",)),
    ("shards", ("replay serve",)),
    ("redis", ("redis-server",)),
    ("ray", ("gcs_server", "raylet", "ray::", "ray/", "dashboard", "log_monitor", "monitor.py")),
)
"""Each process's role, by what its command line (or Ray's process title) contains; the first
match wins; the benchmark's own process is the learner."""


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds (user + system, all threads) used so far by every live process on this machine,
    summed by role: ``learner`` (this process), ``actors``, ``shards``, ``redis``, ``ray`` (Ray's
    own daemons and idle workers), ``other``. Read from ``/proc``; processes that ended in between
    are not counted, so differences are taken over a window in which the run's processes live."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys(("learner", *(role for role, _ in CPU_ROLES), "other"), 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            # fields after the parenthesized name: utime and stime are the 12th and 13th
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we read
            continue
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        if int(entry.name) == os.getpid():
            role = "learner"
        else:
            role = next((r for r, marks in CPU_ROLES if any(m in command for m in marks)), "other")
        totals[role] += seconds
    return totals


def bare_cell_steps_per_second(config: TrainConfig, seconds: float) -> float:
    """Control steps/s of ``actors.cells`` cells stepped with hold actions in this process."""
    batch = GraspCellBatch(config.cell, get_tier(config.tier), config.actors.cells, seed=0)
    obs, _ = batch.reset(seed=0)
    hold = np.concatenate(
        [obs["proprio"][:, :6].astype(np.float64), np.full((config.actors.cells, 2), [0.09, 5.0])], axis=1
    )
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch.step(hold)
        steps += config.actors.cells
    return steps / (time.perf_counter() - start)


def random_batch(config: TrainConfig, size: int) -> Batch:
    """Random tensors with the real observation shapes and dtypes."""
    spec = observation_spec(config.cell)

    def tensor(name: str) -> torch.Tensor:
        s = spec[name]
        if s.dtype == np.uint8:
            return torch.randint(0, 256, (size, *s.shape), dtype=torch.uint8)
        if s.dtype == np.bool_:
            return torch.ones((size, *s.shape), dtype=torch.bool)
        if np.issubdtype(s.dtype, np.integer):
            return torch.randint(0, 8, (size, *s.shape), dtype=torch.int32)
        return torch.rand((size, *s.shape))

    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in cartesian_action_bounds(config.cell, config.action))
    obs = {k: tensor(k) for k in OBSERVATION_KEYS}
    return Batch(
        obs=obs,
        action=low + (high - low) * torch.rand(size, 8),
        reward=torch.rand(size, 1),
        horizon=torch.ones(size),
        terminated=torch.zeros(size),
        next_obs={k: tensor(k) for k in OBSERVATION_KEYS},
        weights=torch.ones(size),
    )


def plain_updates_per_second(config: TrainConfig, seconds: float) -> tuple[float, float]:
    """SAC updates per second and per CPU-second of the same learner on random tensors, nothing
    else running."""
    learner = make_learner(config, device="cpu")
    batch = random_batch(config, config.learning.batch_size)
    for _ in range(3):
        learner.update(batch)
    updates, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        learner.update(batch)
        updates += 1
    return updates / (time.perf_counter() - start), updates / (time.process_time() - cpu)


@contextlib.contextmanager
def replay_shards(config: TrainConfig, count: int) -> Iterator[list[str]]:
    """``count`` real replay shard processes for ``config``'s observations; yields their addresses."""
    from actors.trajectory import grasp_signature
    from graspfleet.ports import free_port
    from replay.process import ShardProcess

    workdir = Path(tempfile.mkdtemp(prefix="graspfleet-e2e-replay-"))
    signature = grasp_signature(observation_spec(config.cell))
    shards = []
    try:
        for i in range(count):
            (workdir / str(i)).mkdir()
            shards.append(ShardProcess(free_port(), signature, workdir / str(i), ["--min-size", "1000"]))
        yield [shard.address for shard in shards]
    finally:
        for shard in shards:
            shard.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def actor_steps_per_cpu_second(config: TrainConfig, seconds: float, shards: list[str]) -> float:
    """Environment steps per CPU-second of one :class:`SimActor` in this process with a core to
    itself: policy inference (one thread, as in an actor process), exploration, the action
    pipeline, and replay writers streaming every step to the ``shards`` (whose own CPU is not
    counted). What an actor does per core where nothing else shares its cores."""
    from actors.sim_actor import SimActor
    from graspfleet.weights import serialize
    from replay.client import ReplayWriter

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        weights = InMemoryWeights()
        weights.publish(0, serialize(make_learner(config, device="cpu").policy_tensors(), 0))
        actor = SimActor(
            "bench-actor",
            config.cell,
            config.tier,
            config.actors.cells,
            sink_factory=lambda name: ReplayWriter(
                shards,
                name,
                chunk_length=config.actors.chunk_length,
                max_pending_chunks=config.actors.writer_max_pending_chunks,
            ),
            weights=weights,
            network=config.network,
            exploration=config.exploration,
            action=config.action,
            seed=0,
        )
        for _ in range(10):
            actor.step()
        steps, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            actor.step()
            steps += config.actors.cells
        for sink in actor.sinks:
            sink.flush()  # the steps counted reached the shards
        rate = steps / (time.process_time() - cpu)
        actor.close()
        return rate
    finally:
        torch.set_num_threads(threads)


def learner_on_replay_updates_per_second(config: TrainConfig, seconds: float, shards: list[str]) -> float:
    """Updates/s of the learner sampling its batches from the ``shards`` (fan-in with prefetch,
    decoding, tensors) with no actor running: the data plane's cost to the learner, without the
    actors' competition for the cores (the shards still sample and send on this machine)."""
    from learner.sac import batch_from_columns
    from replay.client import ReplaySampler

    learner = make_learner(config, device="cpu")
    with ReplaySampler(shards, config.learning.batch_size, prefetch=4, n_step=config.sac.n_step) as sampler:

        def update() -> None:
            sampled = sampler.sample()
            learner.update(batch_from_columns(sampled.columns, "cpu", sampled.weights))

        for _ in range(3):
            update()
        updates, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            update()
            updates += 1
        return updates / (time.perf_counter() - start)


def graspfleet_figures(config: TrainConfig, seconds: float, warmup: float) -> dict[str, Any]:
    """Ingest, updates and weight sync of a distributed run, counted after ``warmup`` seconds."""
    from orchestrator.distributed import train_distributed

    run_dir = Path(tempfile.mkdtemp(prefix="graspfleet-e2e-"))
    marks: dict[str, tuple[float, float, float, dict[str, float]]] = {}

    def progress(row: dict[str, float]) -> None:
        now = time.perf_counter()
        mark = (now, row["env_steps"], row["updates"], cpu_seconds_by_role())
        if "first" not in marks and row["seconds"] >= warmup:
            marks["first"] = mark
        marks["last"] = mark

    try:
        report = train_distributed(
            replace_keys(config, {"budget.seconds": warmup + seconds}),
            run_dir,
            shards=2,
            on_progress=progress,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    (t0, steps0, updates0, cpu0), (t1, steps1, updates1, cpu1) = marks["first"], marks["last"]
    sync = np.asarray(report.weight_sync_seconds[len(report.weight_sync_seconds) // 4 :])  # past warm-up
    # cores each role kept busy over the measured window
    cores_used = {role: (cpu1[role] - cpu0[role]) / (t1 - t0) for role in cpu1}
    return {
        "ingest_env_steps_per_s": (steps1 - steps0) / (t1 - t0),
        "learner_updates_per_s": (updates1 - updates0) / (t1 - t0),
        "cores_used": cores_used,
        "weight_sync_p50_ms": float(np.percentile(sync, 50) * 1e3) if len(sync) else None,
        "weight_sync_p99_ms": float(np.percentile(sync, 99) * 1e3) if len(sync) else None,
        "weight_versions_synced": len(sync),
    }


def flatten_observations(env: Any, spaces: Any = None, device: Any = None) -> Any:
    """RLlib's env-to-module connector for the cell's Dict observations (its SAC needs flat ones)."""
    from ray.rllib.connectors.env_to_module import FlattenObservations

    return FlattenObservations()


def rllib_figures(config: TrainConfig, seconds: float) -> dict[str, float]:
    """RLlib SAC (new API stack) on the same cell: env steps/s and updates/s after its warm-up."""
    import ray
    from ray.rllib.algorithms.sac import SACConfig as RLlibSACConfig
    from ray.tune.registry import register_env

    from graspfleet.sim.env import GraspCellEnv

    register_env("graspfleet-cartesian", lambda _: GraspCellEnv(tier=config.tier, action_mode="cartesian"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        algo = (
            RLlibSACConfig()
            .environment("graspfleet-cartesian")
            .framework("torch")
            .env_runners(
                num_env_runners=0,
                env_to_module_connector=flatten_observations,
            )
            .training(
                train_batch_size_per_learner=config.learning.batch_size, num_steps_sampled_before_learning_starts=1000
            )
            # short iterations (RLlib's default is ≥ 100 sampled steps each), so the clock is read often
            .reporting(min_sample_timesteps_per_iteration=10, min_time_s_per_iteration=0)
            .build_algo()
        )
        updates = env_steps = 0.0
        start = None
        while True:
            result = algo.train()
            sampled = float(result["env_runners"]["num_env_steps_sampled_lifetime"])
            trained = float(
                result.get("learners", {}).get("__all_modules__", {}).get("num_env_steps_trained_lifetime", 0.0)
            )
            if start is None:
                if trained > 0:  # learning started: measure from here
                    start, env_steps, updates = time.perf_counter(), sampled, trained
                continue
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return {
                    "env_steps_per_s": (sampled - env_steps) / elapsed,
                    "updates_per_s": (trained - updates) / config.learning.batch_size / elapsed,
                }
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--cells", type=int, default=4, help="grasp cells per actor")
    parser.add_argument(
        "--compact-actors",
        type=int,
        default=2,
        help="actor processes of the run with the same cells in fewer (0: skip)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time of each part")
    parser.add_argument("--warmup", type=float, default=30.0, help="distributed run: seconds before measuring")
    parser.add_argument(
        "--publish-every",
        type=int,
        default=LearningConfig.publish_every,
        help="learner updates between weight versions (fewer: more versions to time the sync on)",
    )
    args = parser.parse_args()
    # learning.updates_per_step=0 turns the shards' rate limiters off: actors and learner both run flat out,
    # so the figures are the data plane's and the learner's capacity, not a chosen ratio; the
    # curriculum's validations are off, so nothing but training shares the cores
    config = replace_keys(
        TrainConfig(),
        {
            "curriculum.enabled": False,
            "actors.count": args.actors,
            "actors.cells": args.cells,
            "learning.device": "cpu",
            "budget.env_steps": 10**9,
            "learning.min_replay": 2_000,
            "learning.updates_per_step": 0.0,
            "learning.publish_every": args.publish_every,
        },
    )
    cores = os.cpu_count() or 1
    bare = bare_cell_steps_per_second(config, min(args.seconds, 20))
    print(f"bare cell: {bare:,.0f} steps/s", flush=True)
    with replay_shards(config, 2) as shards:
        actor_alone = actor_steps_per_cpu_second(config, min(args.seconds, 20), shards)
        print(f"one actor, a core to itself: {actor_alone:,.0f} steps per CPU-second", flush=True)
        plain, plain_per_cpu = plain_updates_per_second(config, min(args.seconds, 30))
        print(f"plain SAC loop: {plain:.1f} updates/s, {plain_per_cpu:.2f} per CPU-second", flush=True)
        # the steps the lone actor streamed are the replay this learner samples
        on_replay = learner_on_replay_updates_per_second(config, min(args.seconds, 30), shards)
        print(f"learner on replay, no actors: {on_replay:.1f} updates/s", flush=True)
        # the same pair with one intra-op thread: the data plane's own cost, without the stalls
        # of two intra-op threads whenever the shards or the receiving threads take a core
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        plain_one_thread, _ = plain_updates_per_second(config, min(args.seconds, 20))
        on_replay_one_thread = learner_on_replay_updates_per_second(config, min(args.seconds, 20), shards)
        torch.set_num_threads(threads)
        print(f"one thread: plain {plain_one_thread:.1f}, on replay {on_replay_one_thread:.1f} updates/s", flush=True)
    from orchestrator.distributed import learner_threads

    run_threads = learner_threads(config, local_cluster=True) or threads
    # the plain loop with the threads the run's learner takes: the distributed machinery's own cost
    plain_same_threads = {threads: plain, 1: plain_one_thread}.get(run_threads)
    if plain_same_threads is None:
        torch.set_num_threads(run_threads)
        plain_same_threads, _ = plain_updates_per_second(config, min(args.seconds, 20))
        torch.set_num_threads(threads)
    fleet = graspfleet_figures(config, args.seconds, args.warmup)
    print(f"graspfleet (learner on {run_threads} threads): {fleet}", flush=True)
    # the same run with the learner on every core (what it took before learning.threads)
    every_core = graspfleet_figures(replace_keys(config, {"learning.threads": cores}), args.seconds, args.warmup)
    print(f"graspfleet (learner on every core): {every_core}", flush=True)
    every_core_cores = every_core.pop("cores_used")
    compact: dict[str, Any] = {}
    if args.compact_actors:
        cells = args.actors * args.cells // args.compact_actors
        compact = graspfleet_figures(
            replace_keys(config, {"actors.count": args.compact_actors, "actors.cells": cells}),
            args.seconds,
            args.warmup,
        )
        print(f"graspfleet ({args.compact_actors} actors x {cells} cells): {compact}", flush=True)
        compact_cores = compact.pop("cores_used")
        compact_per_actor_core = compact["ingest_env_steps_per_s"] / compact_cores["actors"]
        compact = {
            "actors": args.compact_actors,
            "cells_per_actor": cells,
            **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in compact.items()},
            "cores_used": {role: round(v, 3) for role, v in compact_cores.items()},
            "ingest_env_steps_per_actor_core": round(compact_per_actor_core, 1),
            "ingest_per_actor_core_vs_bare": round(compact_per_actor_core / bare, 3),
        }
    rllib = rllib_figures(config, args.seconds)
    print(f"RLlib SAC: {rllib}", flush=True)
    ingest = fleet["ingest_env_steps_per_s"]
    cores_used = fleet.pop("cores_used")
    # per actor core: the steps over the CPU time the actor processes used (they share the
    # machine's cores with the learner, the shards and Ray's daemons)
    per_actor_core = ingest / cores_used["actors"]
    learner_per_cpu = fleet["learner_updates_per_s"] / cores_used["learner"]
    print(
        json.dumps(
            {
                "cores": cores,
                "learner_threads": run_threads,
                "actors": args.actors,
                "cells_per_actor": args.cells,
                "batch_size": config.learning.batch_size,
                "publish_every": config.learning.publish_every,
                "bare_cell_steps_per_s": round(bare, 1),
                "actor_alone_steps_per_cpu_s": round(actor_alone, 1),
                "plain_sac_updates_per_s": round(plain, 2),
                "plain_sac_updates_per_cpu_s": round(plain_per_cpu, 2),
                "learner_on_replay_updates_per_s": round(on_replay, 2),
                "plain_sac_one_thread_updates_per_s": round(plain_one_thread, 2),
                "learner_on_replay_one_thread_updates_per_s": round(on_replay_one_thread, 2),
                **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in fleet.items()},
                "cores_used": {role: round(v, 3) for role, v in cores_used.items()},
                "ingest_env_steps_per_actor_core": round(per_actor_core, 1),
                "learner_updates_per_cpu_s": round(learner_per_cpu, 2),
                "rllib_env_steps_per_s": round(rllib["env_steps_per_s"], 2),
                "rllib_updates_per_s": round(rllib["updates_per_s"], 2),
                "updates_vs_plain": round(fleet["learner_updates_per_s"] / plain, 3),
                "plain_sac_same_threads_updates_per_s": round(plain_same_threads, 2),
                "updates_vs_plain_same_threads": round(fleet["learner_updates_per_s"] / plain_same_threads, 3),
                "updates_per_cpu_vs_plain": round(learner_per_cpu / plain_per_cpu, 3),
                "on_replay_vs_plain": round(on_replay / plain, 3),
                "on_replay_vs_plain_one_thread": round(on_replay_one_thread / plain_one_thread, 3),
                "ingest_per_actor_core_vs_bare": round(per_actor_core / bare, 3),
                "actor_alone_vs_bare": round(actor_alone / bare, 3),
                "ingest_per_machine_core_vs_bare": round(ingest / cores / bare, 3),
                "env_steps_vs_rllib": round(ingest / rllib["env_steps_per_s"], 2),
                "updates_vs_rllib": round(fleet["learner_updates_per_s"] / rllib["updates_per_s"], 2),
                "learner_on_every_core": {
                    **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in every_core.items()},
                    "cores_used": {role: round(v, 3) for role, v in every_core_cores.items()},
                    "ingest_env_steps_per_actor_core": round(
                        every_core["ingest_env_steps_per_s"] / every_core_cores["actors"], 1
                    ),
                    "updates_vs_plain": round(every_core["learner_updates_per_s"] / plain, 3),
                },
                **({"same_cells_in_fewer_actors": compact} if compact else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
