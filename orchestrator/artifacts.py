"""What a run leaves in its directory: progress rows, evaluations, the best policy, audit records.

- ``metrics.csv`` (:class:`Progress`): one row per published version: counts so far, the actors'
  success rate over the latest episodes, the learner's last update metrics;
- ``evaluations.csv`` (:class:`CsvLog` of :func:`evaluation_row`): deterministic-policy evaluations;
- ``best_policy.safetensors`` and ``best_policy.json`` (:class:`BestPolicy`);
- ``curriculum_events.jsonl`` (:class:`JsonLines`), ``curriculum.csv`` (the curriculum's history);
- ``policy.safetensors`` (the last policy), ``learner/`` (checkpoints), ``*.png`` (plots).

Serial and distributed runs write the same files with the same columns.
"""

from __future__ import annotations

import collections
import csv
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graspfleet.sim.tiers import TIER_ORDER
from learner.curriculum import ValidationResult


class CsvLog:
    """Rows appended to a CSV file as they come (flushed each time, so a live run can be read and
    a killed one keeps its history; a resumed run appends under the existing header); without a
    path only kept in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        self._writer: csv.DictWriter[str] | None = None
        self._handle: Any = None

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.path is None:
            return
        if self._writer is None:
            existing = self.path.is_file() and self.path.stat().st_size > 0
            fields = self.path.open().readline().strip().split(",") if existing else list(row)
            self._handle = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._handle, fieldnames=fields, extrasaction="ignore")
            if not existing:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class Progress:
    """The run's progress rows (``metrics.csv``): counts so far, the actors' success rate over
    about the last ``window`` episodes, and the learner's latest update metrics; one builder for
    the serial and the distributed loop."""

    def __init__(self, path: Path | None, window: int, start: float) -> None:
        self.log = CsvLog(path)
        self.window = window
        self.start = start
        self._recent: collections.deque[tuple[int, int]] = collections.deque()
        self._counted = (0, 0)

    @property
    def rows(self) -> list[dict[str, float]]:
        return self.log.rows

    def recent_success_rate(self, episodes: int, successes: int) -> float:
        """Fold in the totals so far; the success rate of the latest ``window`` episodes (whole
        reports: a report that straddles the window's edge counts in full)."""
        new = (episodes - self._counted[0], successes - self._counted[1])
        self._counted = (episodes, successes)
        if new[0] > 0:
            self._recent.append(new)
        while len(self._recent) > 1 and sum(e for e, _ in self._recent) - self._recent[0][0] >= self.window:
            self._recent.popleft()
        seen = sum(e for e, _ in self._recent)
        return sum(s for _, s in self._recent) / seen if seen else 0.0

    def append(
        self,
        env_steps: int,
        episodes: int,
        successes: int,
        updates: int,
        version: int,
        learner_metrics: dict[str, float],
        **extra: float,
    ) -> dict[str, float]:
        row = {
            "seconds": round(time.perf_counter() - self.start, 2),
            "env_steps": env_steps,
            "updates": updates,
            "weights_version": version,
            "episodes": episodes,
            "success_rate": self.recent_success_rate(episodes, successes),
            **extra,
            **{k: round(v, 5) for k, v in learner_metrics.items()},
        }
        self.log.append(row)
        return row

    def close(self) -> None:
        self.log.close()


class BestPolicy:
    """The best-evaluated policy of a run, kept next to the latest one.

    SAC's deterministic policy does not improve monotonically (on T0 successive evaluations
    swing by 10–30 points, README), so the policy to deploy is the best one an evaluation or a
    curriculum validation saw, not whatever the last update left. Best means: a policy that
    reached ``passing`` success on its tier beats every one that did not; among either kind, the
    highest tier, then the highest success rate; a tie keeps the earlier policy (so a policy that
    has barely started a new tier does not displace the one that passed the last). With a run
    directory the policy goes to ``best_policy.safetensors`` (weights with their version) and its
    evaluation row to ``best_policy.json``, both replaced atomically; ``resume`` starts from the
    best a previous run on the directory kept.
    """

    def __init__(self, run_dir: Path | None, passing: float, resume: bool = False) -> None:
        """``passing``: the success rate at which a tier counts as mastered (a run passes the
        curriculum's ``gate_success``)."""
        self.run_dir = run_dir
        self.passing = passing
        self.evaluation: dict[str, float] | None = None
        if resume and run_dir is not None and (run_dir / "best_policy.json").is_file():
            self.evaluation = json.loads((run_dir / "best_policy.json").read_text())

    def offer(self, blob: bytes, evaluation: Mapping[str, float]) -> bool:
        """Keep ``blob`` if its evaluation beats the best so far; returns whether it did."""
        if self.evaluation is not None and self._rank(evaluation) <= self._rank(self.evaluation):
            return False
        self.evaluation = dict(evaluation)
        if self.run_dir is not None:
            for name, data in (
                ("best_policy.safetensors", blob),
                ("best_policy.json", json.dumps(self.evaluation, indent=2).encode()),
            ):
                staging = self.run_dir / f".{name}.writing"
                staging.write_bytes(data)
                staging.replace(self.run_dir / name)
        return True

    def _rank(self, evaluation: Mapping[str, float]) -> tuple[bool, float, float]:
        success = evaluation["success_rate"]
        return success >= self.passing, evaluation["tier_index"], success


class JsonLines:
    """Records appended to a JSON-lines file (the run directory's audit trail)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, kind: str, fields: Mapping[str, str | int | float]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **fields}) + "\n")


def validation_row(result: ValidationResult, tier: str, updates: int) -> dict[str, float]:
    """A curriculum validation of the policy after ``updates`` updates, as :class:`BestPolicy` rows it."""
    return {
        "tier_index": TIER_ORDER.index(tier),
        "updates": updates,
        "weights_version": result.weights_version,
        "success_rate": result.success_rate,
        "collision_rate": result.collision_rate,
        "episodes": result.episodes,
    }
