"""One replay table: column storage, FIFO remover, samplers and episode bookkeeping (pure).

Storage is one preallocated NumPy ring per column plus an index per slot: the step's
generation (a global insert counter; −1 when empty), tier, policy version, offset in its
episode, the slot of its successor in the same episode (−1 when not yet known or the episode
ended), a reference to its episode's entry in an episode registry (which records how many of
the episode's steps have arrived, so the successors a step has are
``known_steps − 1 − offset``) and whether it is the episode's final observation (``is_last``).
Every insert costs O(chunk), however long the episode. Chunks of different writers interleave
in the ring; successors are linked by slot, so transitions and sequences never cross an
episode boundary.

Sampling weights live in one sum-tree per tier (so sampling can be restricted to tiers while
old tiers stay in the buffer): uniform tables use weight 1, prioritized ones ``p^α``. A step's
weight is non-zero only while it can start a transition (it has a successor and is not the
final observation). Sequences of length L start only where ``known_steps − 1 − offset ≥ L − 1``.

An n-step transition (``sample(…, n_step=n)``) follows a sampled step's successors for up to n
steps: its ``reward`` column holds the rewards ``(B, n)`` of the steps taken (zero after the
last), ``horizon`` how many were taken, ``terminated`` whether the last one ended the episode,
and ``next_*`` the observation after it. It stops early at the episode's end and at the newest
step whose successor has arrived, so every step that can start a one-step transition starts an
n-step one (episode ends included, where the success reward is); the learner discounts.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from replay.config import ShardConfig
from replay.signature import InvalidChunk, Signature
from replay.sum_tree import SumTree

GENERATION_MASK = 0xFFFFFFFF
MAX_N_STEP = 64
"""Longest n-step transition a table draws."""


class DecodedChunk(NamedTuple):
    """A chunk whose tensors were decoded (validated against the signature by :meth:`ReplayTable.insert`)."""

    writer_id: str
    sequence: int
    actor_id: str
    episode_id: int
    step_offset: int
    tier: int
    policy_version: int
    columns: dict[str, np.ndarray]
    priorities: np.ndarray | None
    end_of_episode: bool
    resume: bool = False


class InsertResult(NamedTuple):
    steps: int
    duplicate: bool


class SampleResult(NamedTuple):
    """Sampled rows, from a table in this process or from a shard over the network: columns
    ``(B, …)`` or ``(B, L, …)``, and per row its key, probability, importance weight, tier and
    policy version."""

    columns: dict[str, np.ndarray]
    keys: np.ndarray
    probabilities: np.ndarray
    weights: np.ndarray
    tiers: np.ndarray
    policy_versions: np.ndarray
    burn_in: int = 0
    """Sequences: leading steps meant only to warm up a recurrent state."""
    shard: str = ""
    """The shard's address (empty for a table in this process): where the keys' priorities go."""


class SequenceGap(Exception):
    """A writer's chunk skips sequences the table does not hold (it restarted from a checkpoint)."""

    def __init__(self, writer_id: str, expected: int, got: int) -> None:
        super().__init__(f"sequence: writer {writer_id!r} sent {got}, the shard holds up to {expected - 1}")
        self.expected = expected


class NotEnoughData(Exception):
    """No item of the requested tiers (or long enough) is available yet; retry after inserts."""


@dataclasses.dataclass
class _Episode:
    reference: int
    """Index of the episode in the registry (a ring of ``capacity`` entries: every live episode
    holds at least one slot, so an entry is reused only once its episode is gone)."""
    next_offset: int = 0
    last_slot: int = -1
    last_generation: int = -1


def filled_slots(generation: np.ndarray) -> int:
    """How many slots from 0 the ring has written (it fills from slot 0 up before it wraps), from
    the per-slot ``generation`` index (-1: never written, or left out of a checkpoint)."""
    occupied = np.flatnonzero(generation >= 0)
    return int(occupied[-1]) + 1 if occupied.size else 0


class ReplayTable:
    """Storage + FIFO remover + per-tier samplers of one shard."""

    def __init__(self, signature: Signature, config: ShardConfig, seed: int | None = None) -> None:
        self.signature = signature
        self.config = config
        cap = config.capacity
        self.storage = {c.name: np.empty((cap, *c.shape), dtype=c.np_dtype) for c in signature.columns}
        for column in self.storage.values():
            # Preallocate for real: touch every page now, so inserts never pay first-touch page
            # faults (≈2/3 of an insert's time otherwise) and a shard short of memory fails at
            # start-up instead of mid-run.
            column.fill(0)
        self.generation = np.full(cap, -1, dtype=np.int64)
        self.tier = np.zeros(cap, dtype=np.int16)
        self.policy_version = np.zeros(cap, dtype=np.int64)
        self.step_offset = np.zeros(cap, dtype=np.int64)
        self.next_slot = np.full(cap, -1, dtype=np.int64)
        self.episode_ref = np.zeros(cap, dtype=np.int64)
        self.known_steps = np.zeros(cap, dtype=np.int64)
        """Per episode-registry entry: steps of that episode inserted so far."""
        self.next_episode_ref = 0
        self.is_last = np.zeros(cap, dtype=bool)
        self.priority = np.zeros(cap)
        self.trees = [SumTree(cap) for _ in range(config.max_tiers)]
        self.valid_count = np.zeros(config.max_tiers, dtype=np.int64)
        self.tier_count = np.zeros(config.max_tiers, dtype=np.int64)
        self.cursor = 0
        self.size = 0
        self.next_generation = 0
        self.max_priority = 1.0
        self.episodes: dict[tuple[str, int], _Episode] = {}
        self.closed: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self.writers: dict[str, int] = {}
        self.inserted_steps = 0
        self.sampled_items = 0
        self.evicted_steps = 0
        self.duplicate_chunks = 0
        self.rejected_chunks = 0
        self.priority_updates = 0
        """Items whose priority :meth:`update_priorities` set."""
        self.rng = np.random.default_rng(seed)

    # -- sizes ----------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return self.size * self.signature.step_bytes

    def accepted_sequence(self, writer_id: str) -> int:
        return self.writers.get(writer_id, 0)

    # -- weights ----------------------------------------------------------------------------------

    def _weight(self, priorities: np.ndarray) -> np.ndarray:
        if self.config.sampler == "uniform":
            return np.ones_like(priorities)
        return np.power(priorities, self.config.priority_exponent)

    def _set_sampleable(self, slots: np.ndarray, sampleable: np.ndarray) -> None:
        """Set the sum-tree weight of ``slots`` to their priority weight where ``sampleable``, else 0."""
        if slots.size == 0:
            return
        if slots.size == 1:
            tier = int(self.tier[slots[0]])
            tree = self.trees[tier]
            before = tree.tree[tree.leaves + slots[0]] > 0
            weight = float(self._weight(self.priority[slots])[0]) if sampleable[0] else 0.0
            tree.set_range(int(slots[0]), np.array([weight]))
            self.valid_count[tier] += int(weight > 0) - int(before)
            return
        tiers = self.tier[slots]
        for tier in np.unique(tiers):
            mine = tiers == tier
            s = slots[mine]
            tree = self.trees[int(tier)]
            before = tree.get(s) > 0
            weights = np.where(sampleable[mine], self._weight(self.priority[s]), 0.0)
            tree.set(s, weights)
            self.valid_count[tier] += int((weights > 0).sum()) - int(before.sum())

    @staticmethod
    def _ranges(first: int, steps: int, capacity: int) -> list[tuple[int, int]]:
        """The ring slots ``first … first + steps − 1`` as contiguous ``(start, length)`` pieces."""
        if first + steps <= capacity:
            return [(first, steps)]
        return [(first, capacity - first), (0, first + steps - capacity)]

    # -- insert -------------------------------------------------------------------------------------

    def insert(self, chunk: DecodedChunk) -> InsertResult:
        """Store a chunk (or recognize a duplicate).

        Raises :class:`SequenceGap` when the chunk skips sequences (nothing changes), and
        :class:`InvalidChunk` when it does not fit the table (only its sequence is used up)."""
        last = self.writers.get(chunk.writer_id, 0)
        if chunk.sequence <= last:
            self.duplicate_chunks += 1
            return InsertResult(0, True)
        if chunk.sequence != last + 1 and not chunk.resume:
            raise SequenceGap(chunk.writer_id, last + 1, chunk.sequence)
        try:
            steps = self._check(chunk)
        except InvalidChunk:
            self.rejected_chunks += 1
            if chunk.writer_id:
                self.writers[chunk.writer_id] = chunk.sequence
            raise
        self._store(chunk, steps)
        self.writers[chunk.writer_id] = chunk.sequence
        return InsertResult(steps, False)

    def _check(self, chunk: DecodedChunk) -> int:
        if not chunk.writer_id:
            raise InvalidChunk("writer_id: must not be empty")
        if chunk.sequence < 1:
            raise InvalidChunk("sequence: must be >= 1")
        size = sum(array.nbytes for array in chunk.columns.values())
        if size > self.config.max_chunk_bytes:
            raise InvalidChunk(f"columns: {size:,} bytes exceed the chunk limit of {self.config.max_chunk_bytes:,}")
        steps = self.signature.validate(chunk.columns)
        if steps > self.config.capacity:
            raise InvalidChunk(f"columns: {steps} steps exceed the table capacity {self.config.capacity}")
        if not 0 <= chunk.tier < self.config.max_tiers:
            raise InvalidChunk(f"tier: {chunk.tier} is outside [0, {self.config.max_tiers})")
        if chunk.priorities is not None:
            if chunk.priorities.shape != (steps,):
                raise InvalidChunk(f"priorities: {chunk.priorities.shape[0]} values for {steps} steps")
            if not np.all(np.isfinite(chunk.priorities)) or np.any(chunk.priorities < 0):
                raise InvalidChunk("priorities: must be finite and >= 0")
        key = (chunk.actor_id, chunk.episode_id)
        if key in self.closed:
            raise InvalidChunk(f"episode_id: episode {chunk.episode_id} of actor {chunk.actor_id!r} has already ended")
        expected = self.episodes[key].next_offset if key in self.episodes else 0
        if chunk.step_offset != expected:
            raise InvalidChunk(
                f"step_offset: {chunk.step_offset}, but episode {chunk.episode_id} of actor {chunk.actor_id!r} "
                f"continues at {expected}"
            )
        return steps

    def _store(self, chunk: DecodedChunk, steps: int) -> None:
        cap = self.config.capacity
        slots = (self.cursor + np.arange(steps)) % cap
        pieces = self._ranges(self.cursor, steps, cap)
        occupied = slots[self.generation[slots] >= 0]
        if occupied.size:
            # FIFO remover: zero the range in every tier tree that holds one of its slots (a slot
            # only ever has weight in its own tier's tree, so the others' leaves are zero already).
            for tier in np.unique(self.tier[occupied]):
                tree = self.trees[int(tier)]
                for start, length in pieces:
                    self.valid_count[tier] -= int(
                        (tree.tree[tree.leaves + start : tree.leaves + start + length] > 0).sum()
                    )
                    tree.set_range(start, np.zeros(length))
            np.subtract.at(self.tier_count, self.tier[occupied], 1)
            self.generation[occupied] = -1
            self.evicted_steps += int(occupied.size)
            self.size -= int(occupied.size)
        first = int(slots[0])
        end = first + steps
        for name, column in self.storage.items():
            data = chunk.columns[name]
            if end <= cap:
                column[first:end] = data
            else:
                split = cap - first
                column[first:] = data[:split]
                column[: end - cap] = data[split:]
        generations = self.next_generation + np.arange(steps)
        self.next_generation += steps
        self.generation[slots] = generations
        self.tier[slots] = chunk.tier
        self.policy_version[slots] = chunk.policy_version
        self.step_offset[slots] = chunk.step_offset + np.arange(steps)
        self.next_slot[slots[:-1]] = slots[1:]
        self.next_slot[slots[-1]] = -1
        self.is_last[slots] = False
        if chunk.end_of_episode:
            self.is_last[slots[-1]] = True
        priorities = chunk.priorities if chunk.priorities is not None else np.full(steps, self.max_priority)
        self.priority[slots] = priorities
        if priorities.size:
            self.max_priority = max(self.max_priority, float(priorities.max()))
        # Register or continue the episode, and link its previous chunk.
        key = (chunk.actor_id, chunk.episode_id)
        episode = self.episodes.get(key)
        if episode is None:
            episode = _Episode(reference=self.next_episode_ref % cap)
            self.next_episode_ref += 1
            self.known_steps[episode.reference] = 0
            self.episodes[key] = episode
        if episode.last_slot >= 0 and self.generation[episode.last_slot] == episode.last_generation:
            # the previous chunk's last step now has a successor
            self.next_slot[episode.last_slot] = slots[0]
            self._set_sampleable(np.array([episode.last_slot]), np.array([True]))
        self.episode_ref[slots] = episode.reference
        self.known_steps[episode.reference] = chunk.step_offset + steps
        weights = self._weight(priorities)
        weights[-1] = 0.0  # no successor yet, or the final observation
        tree = self.trees[chunk.tier]
        done = 0
        for start, length in pieces:
            tree.set_range(start, weights[done : done + length])
            done += length
        self.valid_count[chunk.tier] += int((weights > 0).sum())
        self.tier_count[chunk.tier] += steps
        self.size += steps
        self.inserted_steps += steps
        self.cursor = int((self.cursor + steps) % cap)
        if chunk.end_of_episode:
            del self.episodes[key]
            self.closed[key] = None
            while len(self.closed) > self.config.closed_episode_memory:
                self.closed.popitem(last=False)
        else:
            episode.next_offset = chunk.step_offset + steps
            episode.last_slot = int(slots[-1])
            episode.last_generation = int(generations[-1])

    # -- sampling -------------------------------------------------------------------------------

    def _tiers(self, tiers: list[int] | None) -> np.ndarray:
        chosen = np.arange(self.config.max_tiers) if not tiers else np.asarray(sorted(set(tiers)))
        totals = np.array([self.trees[t].total for t in chosen])
        return chosen[totals > 0]

    def _draw(self, count: int, tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots drawn in proportion to their weight across ``tiers``, and their probabilities."""
        totals = np.array([self.trees[t].total for t in tiers])
        grand = totals.sum()
        which = self.rng.choice(len(tiers), size=count, p=totals / grand) if len(tiers) > 1 else np.zeros(count, int)
        slots = np.empty(count, dtype=np.int64)
        weights = np.empty(count)
        for k in np.unique(which):
            rows = which == k
            tree = self.trees[int(tiers[k])]
            slots[rows] = tree.sample(self.rng, int(rows.sum()))
            weights[rows] = tree.get(slots[rows])
        return slots, weights / grand

    def sample(
        self,
        batch_size: int,
        kind: Literal["transition", "sequence"] = "transition",
        sequence_length: int = 1,
        tiers: list[int] | None = None,
        n_step: int = 1,
    ) -> SampleResult:
        """Draw ``batch_size`` transitions (n-step ones for ``n_step > 1``) or sequences; raises
        NotEnoughData when none can be drawn."""
        if n_step > 1:
            self.check_n_step(n_step, kind)
        allowed = self._tiers(tiers)
        if allowed.size == 0:
            raise NotEnoughData("no sampleable item in the requested tiers")
        if kind == "transition":
            slots, probabilities = self._draw(batch_size, allowed)
            rows = slots
        else:
            slots, probabilities = self._draw_sequence_starts(batch_size, sequence_length, allowed)
            rows = np.empty((batch_size, sequence_length), dtype=np.int64)
            rows[:, 0] = slots
            for k in range(1, sequence_length):
                rows[:, k] = self.next_slot[rows[:, k - 1]]
        columns = {name: column[rows] for name, column in self.storage.items()}
        if kind == "transition":
            last = slots
            if n_step > 1:
                last, columns["reward"], columns["horizon"] = self._follow(slots, n_step)
                if "terminated" in self.storage:
                    columns["terminated"] = self.storage["terminated"][last]
            successor = self.next_slot[last]
            for name in self.signature.observation_columns:
                columns[f"next_{name}"] = self.storage[name][successor]
        valid = int(self.valid_count[allowed].sum())
        if self.config.sampler == "prioritized":
            weights = np.power(np.maximum(valid * probabilities, 1e-300), -self.config.importance_exponent)
            weights = (weights / weights.max()).astype(np.float32)
        else:
            weights = np.ones(batch_size, dtype=np.float32)
        self.sampled_items += batch_size
        keys = (slots.astype(np.uint64) << np.uint64(32)) | (self.generation[slots] & GENERATION_MASK).astype(np.uint64)
        return SampleResult(
            columns, keys, probabilities, weights, self.tier[slots].astype(np.int32), self.policy_version[slots]
        )

    def check_n_step(self, n_step: int, kind: str) -> None:
        """Raise ValueError unless the table can draw ``n_step`` transitions of ``kind``."""
        if kind != "transition":
            raise ValueError(f"n_step: only transitions are n-step, not {kind}s")
        if not 1 <= n_step <= MAX_N_STEP:
            raise ValueError(f"n_step: must be in [1, {MAX_N_STEP}], got {n_step}")
        reward = self.storage.get("reward")
        if reward is None or reward.ndim != 1:
            raise ValueError("n_step: needs a scalar 'reward' column, and this table has none")

    def _follow(self, slots: np.ndarray, n_step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each sampled slot: the last step of its n-step transition, the rewards ``(B, n)`` of
        its steps (zero after the last) and how many steps it took."""
        reward = self.storage["reward"]
        terminated = self.storage.get("terminated")
        last = slots.copy()
        horizon = np.ones(slots.size, dtype=np.int32)
        rewards = np.zeros((slots.size, n_step), dtype=np.float32)
        rewards[:, 0] = reward[slots]
        for k in range(1, n_step):
            following = self.next_slot[last]  # a sampled step always has a successor
            go = (self.next_slot[following] >= 0) & ~self.is_last[following]
            if terminated is not None:
                go &= ~terminated[last]
            if not go.any():
                break
            last = np.where(go, following, last)
            rewards[go, k] = reward[following[go]]
            horizon += go
        return last, rewards, horizon

    def successors(self, slots: np.ndarray) -> np.ndarray:
        """How many later steps of the same episode the table has received for each slot."""
        return self.known_steps[self.episode_ref[slots]] - 1 - self.step_offset[slots]

    def _draw_sequence_starts(self, count: int, length: int, tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        need = length - 1
        slots = np.empty(0, dtype=np.int64)
        probabilities = np.empty(0)
        for _ in range(8):  # rejection: most steps can start a sequence
            s, p = self._draw(count, tiers)
            ok = self.successors(s) >= need
            slots = np.concatenate([slots, s[ok]])
            probabilities = np.concatenate([probabilities, p[ok]])
            if slots.size >= count:
                return slots[:count], probabilities[:count]
        # Few valid starts: draw among them directly, in proportion to their weight.
        occupied = np.flatnonzero(self.generation >= 0)
        candidates = occupied[
            (self.successors(occupied) >= need) & ~self.is_last[occupied] & np.isin(self.tier[occupied], tiers)
        ]
        weights = np.zeros(candidates.size)
        for t in np.unique(self.tier[candidates]):
            mine = self.tier[candidates] == t
            weights[mine] = self.trees[int(t)].get(candidates[mine])
        if candidates.size == 0 or weights.sum() <= 0:
            raise NotEnoughData(f"no episode in the requested tiers has {length} consecutive steps yet")
        p = weights / weights.sum()
        chosen = self.rng.choice(candidates.size, size=count, p=p)
        return candidates[chosen], p[chosen]

    # -- priorities --------------------------------------------------------------------------------

    def update_priorities(self, keys: np.ndarray, priorities: np.ndarray) -> tuple[int, int]:
        """Set priorities of sampled items; returns ``(updated, stale)`` (stale: slot overwritten)."""
        if self.config.sampler != "prioritized":
            raise ValueError("this table samples uniformly: priorities cannot be updated")
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(priorities, dtype=np.float64)
        if keys.shape != values.shape:
            raise InvalidChunk(f"priorities: {values.size} values for {keys.size} keys")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InvalidChunk("priorities: must be finite and >= 0")
        slots = (keys >> np.uint64(32)).astype(np.int64)
        generations = (keys & np.uint64(GENERATION_MASK)).astype(np.int64)
        in_range = slots < self.config.capacity
        fresh = np.zeros(keys.size, dtype=bool)
        fresh[in_range] = (self.generation[slots[in_range]] >= 0) & (
            (self.generation[slots[in_range]] & GENERATION_MASK) == generations[in_range]
        )
        s = slots[fresh]
        self.priority[s] = values[fresh]
        self.priority_updates += int(s.size)
        if s.size:
            self.max_priority = max(self.max_priority, float(values[fresh].max()))
            sampleable = (self.next_slot[s] >= 0) & ~self.is_last[s]
            self._set_sampleable(s, sampleable)
        return int(fresh.sum()), int((~fresh).sum())

    # -- state ----------------------------------------------------------------------------------------

    INDEX_ARRAYS = (
        "generation",
        "tier",
        "policy_version",
        "step_offset",
        "next_slot",
        "episode_ref",
        "known_steps",
        "is_last",
        "priority",
    )

    def index_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Copies of the per-slot index arrays and the JSON-able bookkeeping (the checkpoint's
        consistent cut; copying it is the only time a checkpoint holds up the table)."""
        arrays = {name: getattr(self, name).copy() for name in self.INDEX_ARRAYS}
        meta = {
            "cursor": self.cursor,
            "size": self.size,
            "next_generation": self.next_generation,
            "next_episode_ref": self.next_episode_ref,
            "max_priority": self.max_priority,
            "counters": {
                "inserted_steps": self.inserted_steps,
                "sampled_items": self.sampled_items,
                "evicted_steps": self.evicted_steps,
                "duplicate_chunks": self.duplicate_chunks,
                "rejected_chunks": self.rejected_chunks,
                "priority_updates": self.priority_updates,
            },
            "episodes": [
                [actor, episode, e.reference, e.next_offset, e.last_slot, e.last_generation]
                for (actor, episode), e in self.episodes.items()
            ],
            "closed": [[actor, episode] for actor, episode in self.closed],
            "writers": dict(self.writers),
        }
        return arrays, meta

    def load_state(
        self, arrays: dict[str, np.ndarray], columns: Mapping[str, Sequence[np.ndarray]], meta: dict[str, Any]
    ) -> None:
        """Restore from :meth:`index_state` output and column data (per column, pieces laid end
        to end from slot 0); rebuilds the sum-trees."""
        cap = self.config.capacity
        for name in self.INDEX_ARRAYS:
            value = np.asarray(arrays[name])
            if value.shape != (cap,):
                raise ValueError(f"checkpoint index {name!r} has shape {value.shape}, the table capacity is {cap}")
            getattr(self, name)[:] = value
        filled = filled_slots(self.generation)
        for name, column in self.storage.items():
            if name not in columns:
                raise ValueError(f"checkpoint has no data for column {name!r}")
            pieces = columns[name]
            rows = sum(len(piece) for piece in pieces)
            if not filled <= rows <= cap or any(piece.shape[1:] != column.shape[1:] for piece in pieces):
                shapes = ", ".join(str(piece.shape) for piece in pieces)
                expected = f"{filled} to {cap} rows of {column.shape[1:]}"
                raise ValueError(f"checkpoint column {name!r} has pieces of shape {shapes}: expected {expected}")
            start = 0
            for piece in pieces:
                column[start : start + len(piece)] = piece
                start += len(piece)
        self.cursor = int(meta["cursor"])
        self.next_generation = int(meta["next_generation"])
        self.next_episode_ref = int(meta["next_episode_ref"])
        self.max_priority = float(meta["max_priority"])
        for name, value in meta["counters"].items():
            setattr(self, name, int(value))
        self.episodes = {
            (str(a), int(e)): _Episode(int(ref), int(o), int(ls), int(lg)) for a, e, ref, o, ls, lg in meta["episodes"]
        }
        self.closed = collections.OrderedDict(((str(a), int(e)), None) for a, e in meta["closed"])
        self.writers = {str(k): int(v) for k, v in meta["writers"].items()}
        occupied = self.generation >= 0
        self.size = int(occupied.sum())
        self.tier_count[:] = np.bincount(self.tier[occupied], minlength=self.config.max_tiers)[: self.config.max_tiers]
        for tree in self.trees:
            tree.load_state_dict({"weights": np.zeros(cap)})
        self.valid_count[:] = 0
        slots = np.flatnonzero(occupied)
        sampleable = (self.next_slot[slots] >= 0) & ~self.is_last[slots]
        # A successor overwritten since is no successor.
        succ = self.next_slot[slots]
        sampleable &= np.where(succ >= 0, self.generation[np.maximum(succ, 0)] >= 0, False)
        self._set_sampleable(slots, sampleable)
