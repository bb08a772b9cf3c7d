"""The replay table's parts on their own: sum-tree, rate limiter, storage, episodes, state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from replay.config import ShardConfig
from replay.rate_limiter import RateLimiter
from replay.signature import ColumnSpec, InvalidChunk, Signature
from replay.sum_tree import SumTree
from replay.table import DecodedChunk, NotEnoughData, ReplayTable
from tests.replay_helpers import SMALL, chunk


def test_sum_tree_totals_updates_and_state() -> None:
    tree = SumTree(5)
    tree.set(np.array([0, 2, 4]), np.array([1.0, 2.0, 3.0]))
    assert tree.total == pytest.approx(6.0)
    tree.set(np.array([2]), np.array([0.5]))
    assert tree.total == pytest.approx(4.5)
    counts = np.bincount(tree.sample(np.random.default_rng(0), 45_000), minlength=5)
    assert counts[1] == counts[3] == 0
    np.testing.assert_allclose(counts[[0, 2, 4]] / 45_000, np.array([1.0, 0.5, 3.0]) / 4.5, atol=0.01)
    other = SumTree(5)
    other.load_state_dict(tree.state_dict())
    assert other.total == pytest.approx(4.5)
    with pytest.raises(ValueError, match="finite"):
        tree.set(np.array([0]), np.array([-1.0]))


def test_rate_limiter_both_sides() -> None:
    limiter = RateLimiter(ShardConfig(min_size_to_sample=10, samples_per_insert=2.0, error_buffer=8.0))
    assert limiter.can_insert() and not limiter.can_sample()
    limiter.record_insert(10)  # diff = 20 = offset
    assert limiter.can_sample()
    limiter.record_insert(4)  # diff = 28 = max
    assert limiter.can_insert()
    limiter.record_insert(1)  # diff = 30 > max 28: actors must wait
    assert not limiter.can_insert()
    limiter.record_sample(10)  # diff = 20
    assert limiter.can_insert()
    limiter.record_sample(9)  # diff = 11 < min 12: the learner must wait
    assert not limiter.can_sample()
    limiter.record_insert(1)  # diff = 13
    assert limiter.can_sample()


def _table(**overrides: object) -> ReplayTable:
    config = dataclasses.replace(ShardConfig(capacity=64, min_size_to_sample=1), **overrides)
    return ReplayTable(SMALL, config, seed=0)


def test_transitions_pair_each_step_with_its_successor_across_chunks_and_writers() -> None:
    table = _table()
    table.insert(chunk(1, 0, 4, episode=0, writer="w1", actor="a1"))
    table.insert(chunk(1, 0, 3, episode=5, writer="w2", actor="a2"))  # interleaved episode
    table.insert(chunk(2, 4, 4, episode=0, writer="w1", actor="a1", end=True))
    result = table.sample(2_000)
    ids = result.columns["step_id"]
    next_ids = result.columns["next_obs"][:, 0]
    np.testing.assert_array_equal(next_ids, ids + 1)
    # the final observation (id 7) and the newest step of the open episode (id 5002) start no transition
    assert 7 not in ids and 5002 not in ids
    assert set(ids) == {0, 1, 2, 3, 4, 5, 6, 5000, 5001}


def test_sequences_never_cross_episodes() -> None:
    table = _table(capacity=256)
    for episode, length in enumerate([5, 9, 3, 12]):
        table.insert(chunk(episode + 1, 0, length, episode=episode, actor="a", end=True))
    result = table.sample(500, kind="sequence", sequence_length=4)
    obs = result.columns["obs"]
    assert obs.shape == (500, 4, 3)
    assert np.all(obs[:, :, 1] == obs[:, :1, 1])  # one episode per sequence
    np.testing.assert_array_equal(np.diff(obs[:, :, 0], axis=1), 1.0)  # consecutive steps
    assert 2 not in set(obs[:, 0, 1].astype(int))  # the 3-step episode is too short
    with pytest.raises(NotEnoughData):
        table.sample(1, kind="sequence", sequence_length=20)


def test_n_step_transitions_sum_their_steps_and_stop_at_the_episode_end_and_the_newest_step() -> None:
    signature = Signature([*SMALL.columns, ColumnSpec("terminated", "bool", ())])
    table = ReplayTable(signature, ShardConfig(capacity=64, min_size_to_sample=1), seed=0)

    def steps(sequence: int, offset: int, count: int, episode: int, end: bool = False) -> DecodedChunk:
        base = chunk(sequence, offset, count, episode=episode, end=end)
        columns = dict(base.columns)
        columns["reward"] = (columns["step_id"] % 1000 + 1).astype(np.float32)  # step i earns i + 1
        columns["terminated"] = np.zeros(count, dtype=bool)
        if end:  # the last real step terminates; the row after it is the final observation
            columns["terminated"][-2] = True
            columns["reward"][-1] = 0.0
        return base._replace(columns=columns)

    table.insert(steps(1, 0, 7, episode=0, end=True))  # steps 0–5, 5 terminates, final observation 6
    table.insert(steps(2, 0, 4, episode=1))  # steps 1000–1003 of an open episode: 1003 has no successor yet
    result = table.sample(3_000, n_step=3)
    ids = result.columns["step_id"]
    assert set(ids.tolist()) == {0, 1, 2, 3, 4, 5, 1000, 1001, 1002}
    horizon = result.columns["horizon"]
    rewards = result.columns["reward"]
    assert rewards.shape == (3_000, 3)
    expected_horizon = {0: 3, 1: 3, 2: 3, 3: 3, 4: 2, 5: 1, 1000: 3, 1001: 2, 1002: 1}
    for i in expected_horizon:
        rows = ids == i
        step = i % 1000
        h = expected_horizon[i]
        assert set(horizon[rows].tolist()) == {h}
        expected = np.zeros(3, np.float32)
        expected[:h] = np.arange(step + 1, step + 1 + h)
        np.testing.assert_array_equal(rows_of(rewards, rows), expected)
        # the bootstrap observation follows the last step taken
        assert set(result.columns["next_obs"][rows, 0].tolist()) == {i + h}
        assert set(result.columns["terminated"][rows].tolist()) == {i + h == 6}
    plain = table.sample(100)
    assert plain.columns["reward"].shape == (100,) and "horizon" not in plain.columns
    with pytest.raises(ValueError, match="only transitions"):
        table.sample(1, kind="sequence", sequence_length=2, n_step=3)
    with pytest.raises(ValueError, match=r"n_step: needs a scalar 'reward' column"):
        ReplayTable(Signature([SMALL.columns[0]]), ShardConfig(capacity=8), seed=0).sample(1, n_step=2)


def rows_of(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The one distinct row of ``array[rows]`` (the test's rows all hold the same values)."""
    distinct = np.unique(array[rows], axis=0)
    assert len(distinct) == 1
    return distinct[0]


def test_fifo_eviction_keeps_the_newest() -> None:
    table = _table(capacity=10)
    table.insert(chunk(1, 0, 6, episode=0))
    table.insert(chunk(2, 6, 6, episode=0))
    assert table.size == 10 and table.evicted_steps == 2
    ids = set(table.sample(500).columns["step_id"].tolist())
    assert min(ids) == 2


def test_offsets_duplicates_and_ended_episodes() -> None:
    table = _table()
    table.insert(chunk(1, 0, 4))
    with pytest.raises(InvalidChunk, match=r"step_offset: 8, but episode 0 of actor 'a' continues at 4"):
        table.insert(chunk(2, 8, 4))
    with pytest.raises(InvalidChunk, match=r"step_offset: 3, but .* continues at 0"):
        table.insert(chunk(3, 3, 2, episode=1))
    assert table.insert(chunk(1, 0, 4)).duplicate  # resent after a restart: skipped
    table.insert(chunk(4, 4, 2, end=True))
    with pytest.raises(InvalidChunk, match="has already ended"):
        table.insert(chunk(5, 6, 2))
    assert table.size == 6 and table.rejected_chunks == 3 and table.duplicate_chunks == 1


def test_tier_restricted_sampling_keeps_other_tiers() -> None:
    table = _table()
    table.insert(chunk(1, 0, 5, episode=0, tier=0, end=True))
    table.insert(chunk(2, 0, 5, episode=1, tier=2, end=True))
    assert set(table.sample(300, tiers=[2]).tiers.tolist()) == {2}
    assert set(table.sample(300).tiers.tolist()) == {0, 2}
    with pytest.raises(NotEnoughData):
        table.sample(1, tiers=[1])
    assert table.tier_count[0] == 5 and table.tier_count[2] == 5


def test_state_round_trip_restores_sampling_and_bookkeeping() -> None:
    table = _table(sampler="prioritized")
    table.insert(chunk(1, 0, 5, episode=0))
    table.insert(chunk(2, 0, 4, episode=1, end=True))
    arrays, meta = table.index_state()
    restored = _table(sampler="prioritized")
    restored.load_state(arrays, {k: [v.copy()] for k, v in table.storage.items()}, meta)
    assert restored.size == table.size and restored.writers == table.writers
    assert restored.trees[0].total == pytest.approx(table.trees[0].total)
    restored.insert(chunk(3, 5, 2, episode=0))  # the open episode continues where it was
    with pytest.raises(InvalidChunk, match="has already ended"):
        restored.insert(chunk(4, 4, 1, episode=1))


def test_priorities_update_and_stale_keys() -> None:
    table = _table(capacity=8, sampler="prioritized", priority_exponent=1.0)
    table.insert(chunk(1, 0, 4, episode=0))
    result = table.sample(4)
    updated, stale = table.update_priorities(result.keys, np.full(4, 5.0))
    assert updated == 4 and stale == 0
    table.insert(chunk(2, 4, 8, episode=0))  # overwrites every slot
    updated, stale = table.update_priorities(result.keys, np.full(4, 1.0))
    assert updated == 0 and stale == 4
    with pytest.raises(InvalidChunk, match="finite"):
        table.update_priorities(result.keys, np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match="uniformly"):
        _table().update_priorities(result.keys, np.ones(4))


def test_sum_tree_range_update_equals_pointwise_updates() -> None:
    rng = np.random.default_rng(3)
    a, b = SumTree(37), SumTree(37)
    for _ in range(50):
        start = int(rng.integers(0, 37))
        n = int(rng.integers(1, 38 - start))
        w = rng.random(n) * (rng.random(n) < 0.7)
        a.set_range(start, w)
        b.set(np.arange(start, start + n), w)
        np.testing.assert_allclose(a.tree, b.tree, atol=1e-12)
    with pytest.raises(IndexError):
        a.set_range(30, np.ones(10))


def test_checkpoint_leaves_out_slots_overwritten_while_writing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from replay import checkpoint

    table = _table(capacity=16)
    table.insert(chunk(1, 0, 12, episode=0))
    cut = checkpoint.capture(table)  # the index as of 12 steps
    table.insert(chunk(2, 12, 8, episode=0))  # meanwhile: wraps and overwrites the 4 oldest slots
    report = checkpoint.write(tmp_path, table, cut)
    assert report.torn_steps == 4 and report.steps == 8
    assert report.writers == {"w": 1}
    restored = _table(capacity=16)
    checkpoint.restore(tmp_path, restored)
    assert restored.size == 8
    ids = restored.sample(200).columns["step_id"]
    assert set(ids.tolist()) <= set(range(4, 11))  # the surviving steps 4…11, with their own data
    sample = restored.sample(50)
    np.testing.assert_array_equal(sample.columns["next_obs"][:, 0], sample.columns["obs"][:, 0] + 1)


def test_a_checkpoint_holds_the_filled_slots_only_and_older_formats_still_restore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    from replay import checkpoint

    table = _table(capacity=1000)
    table.insert(chunk(1, 0, 12, episode=0))
    checkpoint.write(tmp_path, table, checkpoint.capture(table))
    columns = tmp_path / "current" / "columns"
    assert all(np.load(f, mmap_mode="r").shape[0] == 12 for f in columns.glob("*/*.npy"))  # not 1000
    restored = _table(capacity=1000)
    checkpoint.restore(tmp_path, restored)
    for name, column in table.storage.items():
        np.testing.assert_array_equal(restored.storage[name], column)
    # format 1 wrote every slot, format 2 the filled ones, each column in one file: both restore
    meta = json.loads((tmp_path / "current" / "meta.json").read_text())
    for version, rows in [(1, 1000), (2, 12)]:
        shutil.rmtree(columns)
        columns.mkdir()
        for name, column in table.storage.items():
            np.save(columns / f"{name}.npy", column[:rows], allow_pickle=False)
        (tmp_path / "current" / "meta.json").write_text(json.dumps({**meta, "format_version": version}))
        old = _table(capacity=1000)
        checkpoint.restore(tmp_path, old)
        assert old.size == 12 and set(old.sample(100).columns["step_id"].tolist()) <= set(range(11))


def test_a_checkpoint_rewrites_only_the_segments_that_changed_since_the_last(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from replay import checkpoint

    monkeypatch.setattr(checkpoint, "SEGMENT_SLOTS", 8)
    table = _table(capacity=64)
    step = table.signature.step_bytes
    first_segment = tmp_path / "current" / "columns" / "obs" / "000000.npy"

    def take() -> checkpoint.CheckpointReport:
        return checkpoint.write(tmp_path, table, checkpoint.capture(table))

    table.insert(chunk(1, 0, 40, episode=0))
    (tmp_path / ".writing-1-2" / "columns").mkdir(parents=True)  # what a crash mid-write leaves
    report = take()
    assert not list(tmp_path.glob(".writing-*"))
    assert (report.written_bytes, report.linked_bytes) == (40 * step, 0)
    inode = first_segment.stat().st_ino
    table.insert(chunk(2, 40, 10, episode=0))  # slots 40–49: the fifth segment fills, a sixth begins
    report = take()
    assert (report.written_bytes, report.linked_bytes) == (10 * step, 40 * step)
    assert first_segment.stat().st_ino == inode  # the same file, linked
    table.insert(chunk(3, 50, 20, episode=0))  # slots 50–63 and, wrapping, 0–5 (the oldest go)
    report = take()
    assert (report.written_bytes, report.linked_bytes) == (24 * step, 40 * step)
    assert first_segment.stat().st_ino != inode
    # Overwritten after the cut, in segments the checkpoint links: their earlier copy is what it
    # holds, consistent with its index, so nothing is torn.
    cut = checkpoint.capture(table)
    table.insert(chunk(4, 70, 10, episode=0))  # slots 6–15
    report = checkpoint.write(tmp_path, table, cut)
    assert (report.written_bytes, report.torn_steps) == (0, 0)
    restored = _table(capacity=64)
    checkpoint.restore(tmp_path, restored)
    assert restored.size == 64
    ids = restored.storage["step_id"][restored.generation >= 0]
    assert sorted(ids.tolist()) == list(range(6, 70))  # as of the cut
    sample = restored.sample(300)
    np.testing.assert_array_equal(sample.columns["next_obs"][:, 0], sample.columns["obs"][:, 0] + 1)


def test_restore_refuses_another_signature(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from replay import checkpoint
    from replay.signature import ColumnSpec, Signature

    table = _table()
    table.insert(chunk(1, 0, 4))
    checkpoint.write(tmp_path, table, checkpoint.capture(table))
    other = ReplayTable(Signature([ColumnSpec("x", "float32", ())]), table.config)
    with pytest.raises(ValueError, match="signature differs"):
        checkpoint.restore(tmp_path, other)
