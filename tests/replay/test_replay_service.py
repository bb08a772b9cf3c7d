"""The replay service against real gRPC servers on free loopback ports (and a real killed process)."""

from __future__ import annotations

import filecmp
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from scipy import stats

from graspfleet.ports import free_port
from replay.client import (
    HashRing,
    InvalidTrajectory,
    ReplaySampler,
    ReplayUnavailable,
    ReplayWriter,
    channel,
    shard_info,
)
from replay.config import ShardConfig
from replay.process import ShardProcess
from replay.server import SERVICE_NAME
from replay.signature import SUPPORTED_DTYPES, ColumnSpec, Signature, encode
from replay.v1 import replay_pb2 as pb
from replay.v1 import replay_pb2_grpc as pb_grpc
from tests.replay_helpers import SMALL, ShardThread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shard() -> object:
    server = ShardThread(SMALL, ShardConfig(capacity=10_000, min_size_to_sample=1))
    yield server
    server.stop()


def _step(i: int, episode: int = 0) -> dict[str, np.ndarray]:
    return {
        "obs": np.array([i, episode, 0], dtype=np.float32),
        "step_id": np.int64(i),
        "reward": np.float32(1.0),
    }


def _write_episode(writer: ReplayWriter, first: int, length: int, episode: int = 0) -> None:
    for i in range(first, first + length):
        writer.append(_step(i, episode))
    writer.end_episode({"obs": np.array([first + length, episode, 0], dtype=np.float32)})


def test_every_dtype_and_shape_round_trips() -> None:
    columns = [ColumnSpec("uid", "int64", (), observation=True)]
    shapes = [(), (3,), (2, 2, 2)]
    columns += [ColumnSpec(f"c_{dt}_{i}", dt, shape) for dt in SUPPORTED_DTYPES for i, shape in enumerate(shapes)]
    signature = Signature(columns)
    server = ShardThread(signature, ShardConfig(capacity=1000, min_size_to_sample=1))
    rng = np.random.default_rng(0)
    sent = {}
    try:
        with ReplayWriter([server.address], "dtype-actor", chunk_length=7) as writer:
            for uid in range(40):
                step = {"uid": np.int64(uid)}
                for c in columns[1:]:
                    if c.np_dtype.kind == "b":
                        value = rng.random(c.shape) < 0.5
                    elif c.np_dtype.kind == "f":
                        value = rng.normal(size=c.shape) * 1e3
                    else:
                        info = np.iinfo(c.np_dtype)
                        value = rng.integers(info.min, info.max, size=c.shape, dtype=c.np_dtype, endpoint=True)
                    step[c.name] = np.asarray(value, dtype=c.np_dtype)
                sent[uid] = step
                writer.append(step)
            writer.end_episode({"uid": np.int64(40)})
        with ReplaySampler([server.address], batch_size=64) as sampler:
            batch = sampler.sample()
        assert batch.columns["c_float16_2"].dtype == np.float16 and batch.columns["c_bool_1"].shape == (64, 3)
        for row, uid in enumerate(batch.columns["uid"]):
            for c in columns[1:]:
                np.testing.assert_array_equal(batch.columns[c.name][row], sent[int(uid)][c.name])
    finally:
        server.stop()


def _chi_square_pvalue(counts: np.ndarray, expected_p: np.ndarray) -> float:
    expected = expected_p / expected_p.sum() * counts.sum()
    return float(stats.chisquare(counts, expected).pvalue)


@pytest.mark.parametrize("sampler_kind", ["uniform", "prioritized"])
def test_sampling_frequencies_match_the_sampler(sampler_kind: str) -> None:
    config = ShardConfig(capacity=1000, min_size_to_sample=1, sampler=sampler_kind, priority_exponent=0.6)
    server = ShardThread(SMALL, config)
    try:
        with ReplayWriter([server.address], "stats", chunk_length=50) as writer:
            _write_episode(writer, 0, 50)
        priorities = 1.0 + np.arange(50) % 10  # 1 … 10
        if sampler_kind == "prioritized":
            with ReplaySampler([server.address], batch_size=500, prefetch=1) as sampler:
                batch = sampler.sample()
                assert sampler.update_priorities(batch, priorities[batch.columns["step_id"]]) == 500
        # a fresh stream, so no batch drawn before the update is counted
        with ReplaySampler([server.address], batch_size=500, prefetch=2) as sampler:
            ids = np.concatenate([sampler.sample().columns["step_id"] for _ in range(40)])
        counts = np.bincount(ids, minlength=50)
        expected = np.ones(50) if sampler_kind == "uniform" else priorities**0.6
        assert _chi_square_pvalue(counts, expected) > 1e-3
        if sampler_kind == "prioritized":
            # and it really is skewed: a uniform expectation is rejected
            assert _chi_square_pvalue(counts, np.ones(50)) < 1e-6
    finally:
        server.stop()


def test_importance_weights_follow_beta() -> None:
    config = ShardConfig(
        capacity=100, min_size_to_sample=1, sampler="prioritized", priority_exponent=1.0, importance_exponent=0.5
    )
    server = ShardThread(SMALL, config)
    try:
        with ReplayWriter([server.address], "w", chunk_length=8) as writer:
            _write_episode(writer, 0, 8)
        with ReplaySampler([server.address], batch_size=200, prefetch=1) as sampler:
            batch = sampler.sample()
            sampler.update_priorities(batch, 1.0 + batch.columns["step_id"].astype(float))
        with ReplaySampler([server.address], batch_size=200, prefetch=1) as sampler:
            batch = sampler.sample()
        p = batch.probabilities
        w = (8 * p) ** -0.5
        np.testing.assert_allclose(batch.weights, w / w.max(), rtol=1e-5)
    finally:
        server.stop()


def test_sampling_waits_for_the_minimum_size() -> None:
    server = ShardThread(SMALL, ShardConfig(capacity=1000, min_size_to_sample=30))
    try:
        with ReplaySampler([server.address], batch_size=4) as sampler:
            with pytest.raises(ReplayUnavailable):
                sampler.sample(timeout=1.0)
            with ReplayWriter([server.address], "w", chunk_length=10) as writer:
                _write_episode(writer, 0, 30)
            assert sampler.sample(timeout=10).columns["obs"].shape == (4, 3)
        info = shard_info(server.address)
        assert info.rate_limiter_sample_blocked_seconds >= 0.9
    finally:
        server.stop()


def test_inserts_wait_when_the_learner_falls_behind() -> None:
    config = ShardConfig(capacity=10_000, min_size_to_sample=10, samples_per_insert=1.0, error_buffer=20.0)
    server = ShardThread(SMALL, config)
    try:
        writer = ReplayWriter([server.address], "fast-actor", chunk_length=10, timeout=60)
        _write_episode(writer, 0, 79)  # 80 steps: the ratio allows ~30 before the learner samples
        with pytest.raises(ReplayUnavailable, match="did not accept"):
            writer.flush(timeout=1.5)
        held = shard_info(server.address).size
        assert held < 80
        with ReplaySampler([server.address], batch_size=10) as sampler:
            for _ in range(8):
                sampler.sample(timeout=10)
            writer.flush(timeout=20)
        info = shard_info(server.address)
        assert info.size == 80 and info.rate_limiter_insert_blocked_seconds > 1.0
        writer.close()
    finally:
        server.stop()


def test_a_writer_keeps_appending_while_the_rate_limiter_admits_slowly() -> None:
    """A learner sampling slowly holds the actors back, but must not make them fail: the writer's
    long insert stream cannot finish before its deadline, so it retries with short ones, whose
    acknowledgments make room for append() well within its timeout."""
    config = ShardConfig(capacity=10_000, min_size_to_sample=10, samples_per_insert=1.0, error_buffer=20.0)
    server = ShardThread(SMALL, config)
    stop = threading.Event()

    def slow_learner() -> None:  # 10 rows every 0.4 s: the ratio admits one 10-step chunk as often
        with channel(server.address) as ch:
            stub = pb_grpc.ReplayShardServiceStub(ch)
            one_batch = pb.SampleRequest(batch_size=10, kind=pb.SAMPLE_KIND_TRANSITION, num_batches=1)
            while not stop.is_set():
                for _ in stub.Sample(one_batch, timeout=30):
                    pass
                time.sleep(0.4)

    learner = threading.Thread(target=slow_learner, daemon=True)
    try:
        # 16 chunks pending at most, all in one stream: admitted at ~2.5 chunks/s, a full stream
        # needs ~6 s, longer than the writer's 4 s timeout
        writer = ReplayWriter(
            [server.address], "actor", chunk_length=10, max_pending_chunks=16, chunks_per_stream=16, timeout=4.0
        )
        learner.start()
        _write_episode(writer, 0, 249)  # 250 steps, 25 chunks: append() waits for room
        writer.flush(timeout=60)
        assert writer.stats().accepted_steps == 250 and shard_info(server.address).size == 250
        writer.close()
    finally:
        stop.set()
        learner.join(30)
        server.stop()


def _bad_chunk(kind: str, sequence: int) -> pb.TrajectoryChunk:
    steps = 4
    cols = {
        "obs": np.zeros((steps, 3), np.float32),
        "step_id": np.arange(steps, dtype=np.int64),
        "reward": np.ones(steps, np.float32),
    }
    offset = 0
    if kind == "dtype":
        cols["reward"] = cols["reward"].astype(np.float64)
    elif kind == "rows":
        cols["step_id"] = np.arange(steps + 1, dtype=np.int64)
    elif kind == "nan":
        cols["reward"][2] = np.nan
    elif kind == "unknown":
        cols["bogus"] = np.zeros(steps, np.float32)
    elif kind == "oversize":
        cols = {k: np.repeat(v, 20_000, axis=0) for k, v in cols.items()}
    elif kind == "offset":
        offset = 12
    message = pb.TrajectoryChunk(
        writer_id="bad", sequence=sequence, actor_id="bad-actor", episode_id=sequence, step_offset=offset
    )
    for name, array in cols.items():
        encode(array, message.columns.add(name=name).tensor)
    return message


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("dtype", r"columns\[reward\]\.dtype: expected float32, got float64"),
        ("rows", r"columns\[step_id\]\.shape: 5 rows, but column 'obs' has 4"),
        ("nan", r"columns\[reward\]: contains NaN or Inf"),
        ("unknown", r"columns: unknown column 'bogus'"),
        ("oversize", r"columns: [\d,]+ bytes exceed the chunk limit of 1,048,576"),
        ("offset", r"step_offset: 12, but episode \d+ of actor 'bad-actor' continues at 0"),
    ],
)
def test_bad_input_is_refused_by_name_while_others_keep_writing(kind: str, field: str) -> None:
    server = ShardThread(SMALL, ShardConfig(capacity=10_000, min_size_to_sample=1, max_chunk_bytes=1024 * 1024))
    try:
        stop = threading.Event()
        written = []

        def good_writer() -> None:
            with ReplayWriter([server.address], "good-actor", chunk_length=5) as writer:
                i = 0
                while not stop.is_set():
                    writer.append(_step(i))
                    i += 1
                    if i % 20 == 0:
                        writer.flush()
                        time.sleep(0.01)
                writer.append(_step(i))
                writer.end_episode({"obs": np.zeros(3, np.float32)})
                written.append(i + 2)

        thread = threading.Thread(target=good_writer)
        thread.start()
        time.sleep(0.3)
        with channel(server.address) as ch:
            stub = pb_grpc.ReplayShardServiceStub(ch)
            good = pb.TrajectoryChunk(writer_id="bad", sequence=1, actor_id="bad-actor", episode_id=999, step_offset=0)
            for name, array in {
                "obs": np.zeros((2, 3), np.float32),
                "step_id": np.arange(2, dtype=np.int64),
                "reward": np.ones(2, np.float32),
            }.items():
                encode(array, good.columns.add(name=name).tensor)
            before = shard_info(server.address).size
            with pytest.raises(grpc.RpcError) as caught:
                stub.InsertStream(iter([good, _bad_chunk(kind, 2)]), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details().startswith("chunk 2: ")
            assert __import__("re").search(field, caught.value.details()), caught.value.details()
            metadata = dict(caught.value.trailing_metadata())
            assert metadata["graspfleet-accepted-sequence"] == "2"  # handled through the refused chunk
            assert shard_info(server.address).size >= before + 2
        stop.set()
        thread.join(30)
        info = shard_info(server.address)
        assert info.size == written[0] + 2  # everything the good writer sent, plus the accepted good chunk
        assert info.rejected_chunks == 1
    finally:
        server.stop()


def test_messages_over_the_transport_limit_are_refused_and_the_shard_keeps_serving() -> None:
    server = ShardThread(
        SMALL, ShardConfig(capacity=1000, min_size_to_sample=1, max_message_bytes=64 * 1024, max_chunk_bytes=64 * 1024)
    )
    try:
        with channel(server.address) as ch:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.ReplayShardServiceStub(ch).InsertStream(iter([_bad_chunk("oversize", 1)]), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with ReplayWriter([server.address], "w", chunk_length=4, max_message_bytes=64 * 1024) as writer:
            _write_episode(writer, 0, 8)
        assert shard_info(server.address).size == 9
    finally:
        server.stop()


def test_writer_reports_invalid_steps_before_sending(shard: ShardThread) -> None:
    with ReplayWriter([shard.address], "w") as writer:
        with pytest.raises(InvalidTrajectory, match=r"step: missing column 'reward'"):
            writer.append({"obs": np.zeros(3, np.float32), "step_id": np.int64(0)})
        with pytest.raises(InvalidTrajectory, match=r"step\[obs\]: expected shape \(3,\)"):
            writer.append({"obs": np.zeros(4, np.float32), "step_id": np.int64(0), "reward": np.float32(0)})


def test_n_step_transitions_over_the_wire(shard: ShardThread) -> None:
    with ReplayWriter([shard.address], "n-step", chunk_length=3) as writer:
        _write_episode(writer, 0, 10)
    with ReplaySampler([shard.address], batch_size=256, n_step=4) as sampler:
        batch = sampler.sample()
    ids, horizon = batch.columns["step_id"], batch.columns["horizon"]
    assert batch.columns["reward"].shape == (256, 4) and horizon.dtype == np.int32
    np.testing.assert_array_equal(horizon, np.minimum(4, 10 - ids))  # the episode ends after step 9
    np.testing.assert_array_equal(batch.columns["reward"].sum(axis=1), horizon)  # 1.0 per step taken
    np.testing.assert_array_equal(batch.columns["next_obs"][:, 0], ids + horizon)


def test_writers_keep_accepted_chunks_until_a_checkpoint_holds_them_and_only_for_shards_that_take_one(
    tmp_path: Path,
) -> None:
    config = ShardConfig(capacity=10_000, min_size_to_sample=1, checkpoint_interval=0)
    checkpointing = ShardThread(SMALL, config, checkpoint_dir=tmp_path)
    plain = ShardThread(SMALL, config)
    try:
        kept = ReplayWriter([checkpointing.address], "kept", chunk_length=4)
        released = ReplayWriter([plain.address], "released", chunk_length=4)
        for writer in (kept, released):
            _write_episode(writer, 0, 15)  # 16 rows: 4 chunks
            writer.flush()
        assert kept.stats().retained_chunks == 4 and kept.stats().retained_bytes > 0
        assert released.stats()[-2:] == (0, 0) and released.stats().unprotected_chunks == 0
        checkpointing.call(checkpointing.shard.checkpoint())
        kept.flush()  # the next summary says the chunks are durable
        assert kept.stats().durable_sequence == 4 and kept.stats().retained_chunks == 0
        for writer in (kept, released):
            writer.close()
    finally:
        checkpointing.stop()
        plain.stop()


def test_a_failed_periodic_checkpoint_is_counted_and_the_next_one_is_taken(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from replay import checkpoint

    real_write, calls = checkpoint.write, []

    def write_failing_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the checkpoint code")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "write", write_failing_once)
    server = ShardThread(SMALL, ShardConfig(capacity=1000, checkpoint_interval=0.2), checkpoint_dir=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while server.shard.checkpoints == 0:
            assert time.monotonic() < deadline, "no checkpoint after the failed one"
            time.sleep(0.05)
        assert server.shard.metrics.registry.get_sample_value("graspfleet_replay_checkpoint_failures_total") == 1
        assert shard_info(server.address).checkpoints >= 1  # it kept serving
    finally:
        server.stop()


def test_sample_request_errors(shard: ShardThread) -> None:
    with channel(shard.address) as ch:
        stub = pb_grpc.ReplayShardServiceStub(ch)
        for request, message in [
            (pb.SampleRequest(batch_size=0, kind=pb.SAMPLE_KIND_TRANSITION), "batch_size"),
            (pb.SampleRequest(batch_size=2), "kind"),
            (pb.SampleRequest(batch_size=2, kind=pb.SAMPLE_KIND_SEQUENCE, sequence_length=4, burn_in=4), "burn_in"),
            (pb.SampleRequest(batch_size=2, kind=pb.SAMPLE_KIND_TRANSITION, tiers=[99]), "tiers"),
            (pb.SampleRequest(batch_size=2, kind=pb.SAMPLE_KIND_SEQUENCE, sequence_length=2, n_step=3), "n_step"),
            (pb.SampleRequest(batch_size=2, kind=pb.SAMPLE_KIND_TRANSITION, n_step=65), "n_step"),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                next(iter(stub.Sample(request, timeout=5)))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in caught.value.details()


def test_an_actors_cells_go_round_every_shard_from_where_its_id_hashes() -> None:
    addresses = [f"10.0.0.{k}:7000" for k in range(3)]
    ring = HashRing(addresses)
    orders = [ring.shards_from(f"actor-{k}") for k in range(300)]
    assert all(sorted(order) == addresses for order in orders)  # every shard, once
    assert all(order[0] == ring.shard_for(f"actor-{k}") for k, order in enumerate(orders))
    firsts = [sum(order[0] == a for order in orders) for a in addresses]
    assert min(firsts) > 50  # the actors' starting shards spread over all three
    assert HashRing(addresses[:1]).shards_from("actor-0") == addresses[:1]


def test_health_reflection_and_writers_spread_over_shards() -> None:
    shards = [ShardThread(SMALL, ShardConfig(capacity=1000, min_size_to_sample=1)) for _ in range(3)]
    try:
        address = shards[0].address
        with channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            responses = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = {s.name for s in next(iter(responses)).list_services_response.service}
            assert SERVICE_NAME in names
        addresses = [s.address for s in shards]
        ring = HashRing(addresses)
        # writers whose names hash to every shard (which ones depends on the shards' ports)
        names = [f"actor-{k}" for k in range(200)]
        chosen = [next(n for n in names if ring.shard_for(n) == a) for a in addresses]
        chosen += [n for n in names if n not in chosen][: 12 - len(chosen)]
        for k, name in enumerate(chosen):
            with ReplayWriter(addresses, name, chunk_length=4) as writer:
                _write_episode(writer, 0, 3, episode=k)
        sizes = [shard_info(a).size for a in addresses]
        assert sizes == [4 * sum(ring.shard_for(n) == a for n in chosen) for a in addresses]  # where hashed
        assert sum(sizes) == 48 and all(s > 0 for s in sizes)
        with ReplaySampler(addresses, batch_size=8) as sampler:
            shards_seen = {sampler.sample().shard for _ in range(30)}
        assert shards_seen == set(addresses)
    finally:
        for s in shards:
            s.stop()


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    from replay.codegen import GENERATED, generate

    generated = generate(ROOT / "protos", tmp_path)
    assert sorted(p.name for p in generated) == sorted(GENERATED)
    for fresh in generated:
        committed = ROOT / "replay" / "v1" / fresh.name
        assert committed.exists(), f"{committed} is missing: run make protos"
        assert filecmp.cmp(fresh, committed, shallow=False), f"{committed} is stale: run make protos"
    # the generated stubs import the messages from where replay keeps them
    assert "from replay.v1 import replay_pb2" in (tmp_path / "replay_pb2_grpc.py").read_text()


def test_a_killed_shard_restores_its_checkpoint_and_writers_resend_what_it_lost(tmp_path: Path) -> None:
    shard = ShardProcess(
        free_port(),
        SMALL,
        tmp_path,
        [
            "--capacity",
            "100000",
            "--min-size",
            "1",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--checkpoint-interval",
            "0.5",
        ],
    )
    address = shard.address
    try:
        writer = ReplayWriter([address], "survivor", chunk_length=8, timeout=60)
        total = 0
        for episode in range(10):
            _write_episode(writer, 0, 15, episode=episode)
            total += 16
        writer.flush()
        deadline = time.monotonic() + 20
        while writer.stats().durable_sequence == 0 or shard_info(address).checkpoints == 0:
            assert time.monotonic() < deadline, "no checkpoint was taken"
            time.sleep(0.1)
            writer.flush()
        # More data the checkpoint does not hold yet, then SIGKILL while the writer streams.
        for episode in range(10, 14):
            _write_episode(writer, 0, 15, episode=episode)
            total += 16
        writer.flush()
        shard.kill()  # SIGKILL: no final checkpoint
        for episode in range(14, 18):  # appended while the shard is down: buffered
            _write_episode(writer, 0, 15, episode=episode)
            total += 16
        shard.restart()
        restored = shard_info(address).restored_steps
        assert 0 < restored < total
        writer.flush(timeout=60)
        info = shard_info(address)
        stats = writer.stats()
        assert info.size == total == stats.appended_steps  # the counts add up: nothing lost
        assert stats.resent_chunks > 0 and stats.unprotected_chunks == 0
        assert info.rejected_chunks == 0
        with ReplaySampler([address], batch_size=64, kind="sequence", sequence_length=16) as sampler:
            obs = sampler.sample().columns["obs"]
        assert np.all(obs[:, :, 1] == obs[:, :1, 1]) and np.all(np.diff(obs[:, :, 0], axis=1) == 1)
        writer.close()
    finally:
        shard.stop()
