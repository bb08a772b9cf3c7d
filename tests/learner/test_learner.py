"""The learner's networks, SAC update and weight format, on real grasp-cell observations."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
import torch

from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.config import ActionConfig
from graspfleet.config import ConfigError
from graspfleet.networks import ConcatCritic, NetworkConfig, SharedForcePositionCritic, rgbd_image
from graspfleet.sim.config import CellConfig
from graspfleet.spec import MODALITIES, OBSERVATION_KEYS, observation_spec
from graspfleet.weights import VERSION_KEY, deserialize, read_metadata, serialize
from learner.config import SACConfig
from learner.sac import SACLearner, batch_from_columns, frozen, pose_targets
from tests.helpers import hold_action, make_batch

CELL = CellConfig()
SPEC = observation_spec(CELL)
BOUNDS = cartesian_action_bounds(CELL, ActionConfig())


@pytest.fixture(scope="module")
def columns() -> dict[str, np.ndarray]:
    """64 real transitions from four T4 cells (occlusion and dropout included)."""
    cells = make_batch("T4", cells=4, seed=0)
    obs, _ = cells.reset(seed=0)
    rng = np.random.default_rng(0)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in [*OBSERVATION_KEYS, *(f"next_{k}" for k in OBSERVATION_KEYS)]}
    rows.update(action=[], reward=[], terminated=[])
    for _ in range(16):
        action = hold_action(cells)
        action[:, :6] += rng.normal(0, 0.02, (4, 6))
        next_obs, reward, terminated, _, _ = cells.step(action)
        for k in OBSERVATION_KEYS:
            rows[k].append(obs[k])
            rows[f"next_{k}"].append(next_obs[k])
        cartesian = np.concatenate([rng.normal(0, 0.01, (4, 6)), action[:, 6:]], axis=1)
        rows["action"].append(cartesian.astype(np.float32))
        rows["reward"].append(reward.astype(np.float32))
        rows["terminated"].append(terminated)
        obs = next_obs
    return {k: np.concatenate(v) for k, v in rows.items()}


def _learner(**sac: object) -> SACLearner:
    torch.manual_seed(0)
    return SACLearner(SPEC, BOUNDS, NetworkConfig(), dataclasses.replace(SACConfig(), **sac), device="cpu")


def test_shapes_and_action_ranges(columns: dict[str, np.ndarray]) -> None:
    learner = _learner()
    batch = batch_from_columns(columns)
    actions = learner.act(batch.obs)
    assert actions.shape == (64, 8) and torch.isfinite(actions).all()
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in BOUNDS)
    assert (actions >= low).all() and (actions <= high).all()  # twist within the step box, gripper in range
    assert (high[:3] == ActionConfig().max_translation_step).all() and high[6] == CELL.gripper.max_width
    latent = learner.encoder(batch.obs)
    assert latent.shape == (64, 256)


def test_the_actor_never_reads_privileged_state_and_the_critic_does(columns: dict[str, np.ndarray]) -> None:
    learner = _learner()
    batch = batch_from_columns(columns)
    altered = dict(batch.obs)
    altered["privileged"] = batch.obs["privileged"] + 10.0
    torch.testing.assert_close(learner.act(batch.obs, True), learner.act(altered, True))
    _, state = learner._state(learner.encoder, batch.obs)
    _, state_altered = learner._state(learner.encoder, altered)
    assert not torch.allclose(learner.critics[0](state, batch.action), learner.critics[0](state_altered, batch.action))


def test_the_cnn_reads_depth_then_rgb_in_channels_last_layout(columns: dict[str, np.ndarray]) -> None:
    obs = batch_from_columns(columns).obs
    image = rgbd_image(obs)
    reference = torch.cat([obs["depth"].float()[:, None], obs["rgb"].float().permute(0, 3, 1, 2) / 255.0], dim=1)
    assert image.shape == (64, 4, *SPEC["depth"].shape)
    assert image.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(image, reference)
    # the convolutions give the same features, and gradients, in either layout
    vision = _learner().encoder.vision
    torch.testing.assert_close(vision(image), vision(reference.contiguous()))
    grads = []
    for layout in (image, reference.contiguous()):
        vision.zero_grad()
        vision(layout).square().sum().backward()
        grads.append([p.grad.clone() for p in vision.parameters() if p.grad is not None])
    for channels_last_grad, nchw_grad in zip(*grads, strict=True):
        torch.testing.assert_close(channels_last_grad, nchw_grad, rtol=1e-4, atol=1e-5)


def test_missing_modalities_contribute_nothing(columns: dict[str, np.ndarray]) -> None:
    learner = _learner()
    obs = {k: v[:1] for k, v in batch_from_columns(columns).obs.items()}
    obs["mask"] = obs["mask"].clone()
    obs["mask"][0, 2] = False  # tactile missing
    noisy = dict(obs)
    noisy["tactile"] = obs["tactile"] + 1e3
    torch.testing.assert_close(learner.encoder(obs), learner.encoder(noisy))


def test_shared_critic_combines_state_and_action_embeddings_by_subtraction() -> None:
    config = NetworkConfig()
    critic = SharedForcePositionCritic(12, config)
    state, action = torch.randn(5, 12), torch.randn(5, 8)
    s_emb = critic.state(state)
    a_emb = critic.position(action[:, :7]) + critic.force(action[:, 7:])
    assert s_emb.shape == a_emb.shape == (5, 256)
    torch.testing.assert_close(critic(state, action), critic.head(s_emb - a_emb).squeeze(-1))
    assert isinstance(_learner().critics[0], SharedForcePositionCritic)
    ablation = SACLearner(SPEC, BOUNDS, NetworkConfig(critic="concat"), device="cpu")
    assert isinstance(ablation.critics[0], ConcatCritic)


def test_updates_fit_the_critic_and_move_alpha(columns: dict[str, np.ndarray]) -> None:
    learner = _learner(gamma=0.0)  # the target is then exactly the reward: the critic must fit it
    batch = batch_from_columns(columns)
    first = learner.update(batch)
    for _ in range(60):
        last = learner.update(batch)
    assert last["critic_loss"] < 0.5 * first["critic_loss"]
    assert learner.updates == 61
    # the entropy starts far above the target (−8), so α must shrink
    assert last["alpha"] < first["alpha"]
    assert all(np.isfinite(v) for v in last.values())


def test_the_actor_loss_reaches_the_actions_through_frozen_critics_that_train_again_after(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner()
    state = torch.randn(4, learner.network_config.latent_dim + SPEC["privileged"].shape[0])
    action = torch.zeros(4, 8, requires_grad=True)
    with frozen(learner.critics[0]):
        q = learner.critics[0](state, action).sum()
    q.backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in learner.critics[0].parameters())  # no weight gradient was built
    assert all(p.requires_grad for p in learner.critics[0].parameters())
    with pytest.raises(RuntimeError), frozen(learner.critics[1]):
        raise RuntimeError("an error inside leaves the flags restored")
    assert all(p.requires_grad for p in learner.critics[1].parameters())
    before = [p.detach().clone() for p in learner.critics[0].parameters()]
    learner.update(batch_from_columns(columns))
    assert all(p.requires_grad for m in learner.critics for p in m.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, learner.critics[0].parameters(), strict=True))


def test_a_channel_with_a_large_gradient_gets_a_smaller_learning_rate_and_recovers(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner(force_grad_threshold=1e-9, position_grad_threshold=1e9, lr_reduction=0.5, lr_cooldown=5)
    batch = batch_from_columns(columns)
    rates = [learner.update(batch)["force_lr"] for _ in range(10)]
    # one reduction per cooldown, not one per update
    assert rates[:4] == [pytest.approx(3e-4)] * 4
    assert rates[4:9] == [pytest.approx(1.5e-4)] * 5
    assert rates[9] == pytest.approx(7.5e-5)
    assert learner.learning_rates()["position"] == pytest.approx(3e-4)
    learner.channels.thresholds["force"] = 1e9  # the gradient is fine again: the rate climbs back to its base
    rates = [learner.update(batch)["force_lr"] for _ in range(20)]
    assert rates[4] == pytest.approx(1.5e-4) and rates[9] == pytest.approx(3e-4) and rates[-1] == pytest.approx(3e-4)


def test_demonstrations_pull_the_policy_towards_the_expert_while_the_bc_weight_decays(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner(bc_weight=10.0, bc_updates=40, policy_averaging=1.0)
    batch = batch_from_columns(columns)
    demos = batch_from_columns({k: v[:32] for k, v in columns.items()})
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in BOUNDS)
    expert = low + (high - low) * torch.linspace(0.2, 0.8, 8)  # one fixed expert action, inside the box
    demos = demos._replace(action=expert.expand(32, 8).clone())

    def imitation_error(learner: SACLearner) -> float:
        return float((learner.act(demos.obs, deterministic=True) - expert).div(high - low).abs().mean())

    before = imitation_error(learner)
    without = _learner(bc_weight=10.0, bc_updates=40, policy_averaging=1.0)  # the same learner, never shown the expert
    for _ in range(40):
        without.update(batch)
    first = learner.update(batch, demos)
    weights = [first["bc_weight"]] + [learner.update(batch, demos)["bc_weight"] for _ in range(39)]
    assert imitation_error(learner) < 0.75 * before
    assert imitation_error(learner) < 0.75 * imitation_error(without)
    assert weights[0] == pytest.approx(10.0) and weights[20] == pytest.approx(5.0) and weights[-1] > 0
    assert learner.update(batch, demos)["bc_weight"] == 0.0  # decayed: plain SAC from here on
    assert learner.update(batch)["bc_loss"] == 0.0


def test_the_td_errors_that_become_priorities_cover_the_replay_rows_and_rank_a_surprise_first(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner()
    reward = columns["reward"].copy()
    reward[5] += 100.0  # the success bonus where the critic expects a routine step
    batch = batch_from_columns({**columns, "reward": reward})
    demos = batch_from_columns({k: v[:8] for k, v in columns.items()})
    learner.update(batch, demos)
    td = learner.last_td_errors
    assert td.shape == (64,)  # the replay rows, in batch order; not the 8 demonstrations
    assert int(td.argmax()) == 5 and float(td[5]) > 50 and bool((td >= 0).all())


def test_an_n_step_target_discounts_each_reward_and_bootstraps_after_the_steps_taken(
    columns: dict[str, np.ndarray],
) -> None:
    def targets(reward: np.ndarray, horizon: np.ndarray) -> torch.Tensor:
        learner = _learner(gamma=0.9)
        torch.manual_seed(1)  # the same next actions drawn for both batches
        learner.update(batch_from_columns({**columns, "reward": reward, "horizon": horizon}))
        return learner._last_td[1]

    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(64, 3)).astype(np.float32)
    horizon = rng.integers(1, 4, size=64).astype(np.int32)
    rewards[np.arange(3) >= horizon[:, None]] = 0.0  # as a table pads them
    one_step = targets(rewards[:, 0], np.ones(64, np.int32))
    n_step = targets(rewards, horizon)
    discounted = torch.as_tensor(rewards @ np.array([1.0, 0.9, 0.81], np.float32))
    bootstrap = one_step - torch.as_tensor(rewards[:, 0])  # 0.9 (1 - terminated) V(next)
    expected = discounted + torch.as_tensor(0.9 ** (horizon - 1), dtype=torch.float32) * bootstrap
    torch.testing.assert_close(n_step, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(n_step, one_step)


def test_the_reward_scale_multiplies_the_rewards_and_not_the_bootstrap(columns: dict[str, np.ndarray]) -> None:
    def target(scale: float) -> torch.Tensor:
        learner = _learner(reward_scale=scale)
        torch.manual_seed(1)  # the same next actions drawn for both
        learner.update(batch_from_columns(columns))
        return learner._last_td[1]

    reward = torch.as_tensor(columns["reward"])
    bootstrap = target(1.0) - reward  # γ (1 - terminated) (min Q' - α log π')
    torch.testing.assert_close(target(0.05), 0.05 * reward + bootstrap, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"sac\.reward_scale: must be > 0"):
        SACConfig(reward_scale=0.0)


def test_without_the_entropy_backup_the_target_is_the_reward_plus_the_discounted_critic_minimum(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner(backup_entropy=False, gamma=0.9, initial_alpha=5.0)  # a large α would show
    batch = batch_from_columns(columns)
    torch.manual_seed(1)
    with torch.no_grad():
        following = learner.policy(learner.encoder(batch.next_obs))
        _, next_state = learner._state(learner.target_encoder, batch.next_obs)
        next_q = torch.min(*(critic(next_state, following.action) for critic in learner.target_critics))
    torch.manual_seed(1)  # the same next actions in the update
    learner.update(batch)
    expected = batch.reward[:, 0] + 0.9 * (1 - batch.terminated) * next_q
    torch.testing.assert_close(learner._last_td[1], expected, rtol=1e-5, atol=1e-5)
    with_entropy = _learner(gamma=0.9, initial_alpha=5.0)
    torch.manual_seed(1)
    with_entropy.update(batch)
    assert not torch.allclose(with_entropy._last_td[1], expected, atol=1e-2)


def test_a_bf16_encoder_gives_a_float32_latent_close_to_the_float32_one(columns: dict[str, np.ndarray]) -> None:
    full, half = _learner(), _learner(bf16_encoder=True)  # the same initial weights (seed 0)
    obs = batch_from_columns(columns).obs
    with torch.no_grad():
        exact, approximate = full._encode(full.encoder, obs), half._encode(half.encoder, obs)
    assert approximate.dtype == torch.float32
    assert not torch.equal(exact, approximate)  # it did run in bfloat16 …
    assert float((approximate - exact).norm() / exact.norm()) < 0.03  # … to bfloat16's precision
    stats = half.update(batch_from_columns(columns))
    assert np.isfinite(stats["critic_loss"]) and half.updates == 1


def test_the_ik_penalty_joins_the_actor_loss_where_the_batch_arm_is_at_its_limits(
    columns: dict[str, np.ndarray],
) -> None:
    from graspfleet.actions.ik_torch import TorchArmKinematics

    arm = (TorchArmKinematics(CELL), ActionConfig())
    at_limits = {**columns, "proprio": columns["proprio"].copy()}
    at_limits["proprio"][:, :6] = arm[0].joint_high.numpy() - 0.01  # every joint 10 mrad from its limit
    batch = batch_from_columns(at_limits)
    results = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        learner = SACLearner(
            SPEC, BOUNDS, NetworkConfig(), SACConfig(reachability_weight=weight), device="cpu", kinematics=arm
        )
        torch.manual_seed(1)
        results[weight] = (learner.update(batch), learner.policy.position_head.weight.detach().clone())
    assert results[0.0][0]["reachability"] == 0.0  # not computed without a weight
    assert results[1.0][0]["reachability"] > 0
    assert not torch.equal(results[0.0][1], results[1.0][1])  # it moved the policy differently
    with pytest.raises(ValueError, match="reachability_weight > 0 needs the arm's kinematics"):
        SACLearner(SPEC, BOUNDS, NetworkConfig(), SACConfig(reachability_weight=1.0), device="cpu")


class ConstantCritic(torch.nn.Module):
    """A critic that values every state and action at ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.full((len(state),), self.value)


def test_the_target_is_the_minimum_over_a_random_subset_of_the_ensemble(columns: dict[str, np.ndarray]) -> None:
    learner = _learner(critics=4, critic_subset=2, backup_entropy=False, gamma=0.5)
    learner.target_critics = torch.nn.ModuleList(ConstantCritic(v) for v in (1.0, 2.0, 3.0, 4.0))
    batch = batch_from_columns(columns)
    live = batch.terminated == 0
    minima = []
    for _ in range(24):
        learner.update(batch)
        bootstrap = (learner._last_td[1] - batch.reward[:, 0])[live] / 0.5
        assert torch.allclose(bootstrap, bootstrap[0].expand_as(bootstrap), atol=1e-5)  # one subset per update
        minima.append(round(float(bootstrap[0]), 4))
    # the minimum of two of {1, 2, 3, 4}: 1 (half the pairs), 2 or 3; never 4, which no pair has as its minimum
    assert set(minima) == {1.0, 2.0, 3.0}
    assert learner._last_td[0].shape == (4, 64) and learner.last_td_errors.shape == (64,)


def test_the_actor_maximizes_the_ensemble_minimum_or_mean_as_configured(columns: dict[str, np.ndarray]) -> None:
    batch = batch_from_columns(columns)
    losses = {}
    for actor_q in ("min", "mean"):
        learner = _learner(critics=3, critic_subset=3, actor_q=actor_q, initial_alpha=1e-8, bc_updates=0)
        learner.critics = torch.nn.ModuleList(ConstantCritic(v) for v in (1.0, 2.0, 6.0))
        latent = learner.encoder(batch.obs).detach()
        state = torch.cat([latent, batch.obs["privileged"].float()], 1)
        losses[actor_q] = learner._update_actor(batch, latent, state, demos=0)["actor_loss"]
    # the tangent penalty and α log π are alike in both (same seed, same weights) and tiny
    assert losses["min"] == pytest.approx(-1.0, abs=0.05) and losses["mean"] == pytest.approx(-3.0, abs=0.05)
    with pytest.raises(ConfigError, match=r"sac\.critic_subset: must be in \[1, sac\.critics = 2\]"):
        SACConfig(critic_subset=3)


def test_a_checkpoint_of_another_ensemble_size_is_refused_with_what_differs(
    columns: dict[str, np.ndarray], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from learner import checkpoint

    checkpoint.save(_learner(), tmp_path / "ckpt", weights_version=3)
    with pytest.raises(ValueError, match=r"its critics does not fit this learner .*sac\.critics"):
        checkpoint.restore(_learner(critics=3), tmp_path / "ckpt")


def test_actors_get_a_moving_average_of_the_trained_policy(columns: dict[str, np.ndarray]) -> None:
    learner = _learner(policy_averaging=0.25)
    batch = batch_from_columns(columns)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    learner.update(batch)
    trained = learner.policy.state_dict()
    published = learner.policy_tensors()
    for key in ("trunk.0.weight", "force_head.bias"):
        assert not torch.equal(trained[key], before[key])
        torch.testing.assert_close(published[f"policy.{key}"], before[key] + 0.25 * (trained[key] - before[key]))
    torch.testing.assert_close(published["policy.action_centre"], trained["action_centre"])
    acting = learner.act(batch.obs, deterministic=True)
    raw = learner.policy(learner.encoder(batch.obs), deterministic=True).action.detach()
    assert not torch.allclose(acting, raw)


def test_the_kl_term_pulls_the_policy_towards_the_frozen_reference(columns: dict[str, np.ndarray]) -> None:
    batch = batch_from_columns(columns)
    torch.manual_seed(1)
    reference = SACLearner(SPEC, BOUNDS, NetworkConfig(), SACConfig(), device="cpu").policy_tensors()
    pulled, free = _learner(), _learner()
    pulled.set_kl_reference(reference, 20.0)
    free.set_kl_reference(reference, 1e-12)  # measured, but with no pull
    first = pulled.update(batch)["kl"]
    assert first > 0 and free.update(batch)["kl"] == pytest.approx(first)
    for _ in range(30):
        kl_pulled, kl_free = pulled.update(batch)["kl"], free.update(batch)["kl"]
    assert kl_pulled < 0.5 * first and kl_pulled < 0.5 * kl_free
    pulled.set_kl_reference(None, 20.0)
    assert pulled.update(batch)["kl"] == 0.0 and pulled.kl_weight == 0.0


def test_the_curriculum_scales_every_learning_rate_and_keeps_a_channel_reduction(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner(force_grad_threshold=1e-9, lr_cooldown=1)
    learner.update(batch_from_columns(columns))  # the force channel is halved once
    assert learner.learning_rates() == {"trunk": 3e-4, "position": 3e-4, "force": 1.5e-4}
    learner.set_lr_scale(0.5)
    assert learner.learning_rates() == pytest.approx({"trunk": 1.5e-4, "position": 1.5e-4, "force": 7.5e-5})
    assert learner.critic_optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-4)
    assert learner.channels.base_lr == pytest.approx({"position": 1.5e-4, "force": 1.5e-4})


def test_weights_round_trip_through_safetensors_without_pickle(columns: dict[str, np.ndarray]) -> None:
    source = _learner()
    blob = serialize(source.policy_tensors(), version=7, metadata={"tier": "T0"})
    (header_length,) = struct.unpack("<Q", blob[:8])
    assert blob[8:9] == b"{" and header_length < len(blob)  # a JSON header, then raw bytes
    assert b"\x80\x04" not in blob[: 8 + header_length]  # no pickle protocol marker in the header
    assert read_metadata(blob) == {"tier": "T0", VERSION_KEY: "7"}
    weights = deserialize(blob)
    assert weights.version == 7
    target = SACLearner(SPEC, BOUNDS, device="cpu")
    target.load_policy_tensors(weights.tensors)
    obs = batch_from_columns(columns).obs
    torch.testing.assert_close(target.act(obs, True), source.act(obs, True))
    with pytest.raises(ValueError, match="header"):
        deserialize(blob[:4] + b"\xff\xff\xff\xff" + blob[8:])


def test_a_restored_learner_continues_exactly_where_it_stopped(columns: dict[str, np.ndarray], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from learner import checkpoint

    batch = batch_from_columns(columns)
    original = _learner()
    torch.manual_seed(7)
    snapshot = SACLearner(SPEC, BOUNDS, NetworkConfig(), SACConfig(), device="cpu").policy_tensors()
    original.set_kl_reference(snapshot, 0.5)  # mid-curriculum: a KL reference and a scaled learning rate
    original.set_lr_scale(0.5)
    for _ in range(3):
        original.update(batch)
    checkpoint.save(original, tmp_path / "ckpt", weights_version=5)
    assert b"\x80\x04" not in (tmp_path / "ckpt" / "tensors.safetensors").read_bytes()[:64]
    resumed = SACLearner(SPEC, BOUNDS, NetworkConfig(), SACConfig(), device="cpu")
    assert checkpoint.restore(resumed, tmp_path / "ckpt") == 5
    assert resumed.updates == 3
    assert resumed.channels.state() == original.channels.state()
    assert resumed.lr_scale == 0.5 and resumed.learning_rates() == original.learning_rates()
    assert resumed.kl_weight == 0.5 and resumed.kl_reference_tensors().keys() == snapshot.keys()
    torch.manual_seed(123)
    expected = original.update(batch)
    torch.manual_seed(123)
    got = resumed.update(batch)
    assert got == expected  # same networks, optimizer moments, α and counters: the same next step
    for a, b in zip(original.critics.parameters(), resumed.critics.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_policy_delay_steps_the_actor_and_temperature_every_kth_update_and_the_critic_every_one(
    columns: dict[str, np.ndarray],
) -> None:
    learner = _learner(actor_update_every=3)
    batch = batch_from_columns(columns)

    def snapshot() -> tuple[torch.Tensor, torch.Tensor, float]:
        critic = torch.cat([p.detach().flatten() for p in learner.critics[0].parameters()])
        policy = torch.cat([p.detach().flatten() for p in learner.policy.parameters()])
        return critic, policy, learner.alpha

    before = snapshot()
    actor_stepped = []
    for _ in range(6):
        stats = learner.update(batch)
        after = snapshot()
        assert not torch.equal(before[0], after[0])  # the critic steps every update
        actor_stepped.append(not torch.equal(before[1], after[1]))
        assert actor_stepped[-1] == (before[2] != after[2])  # the temperature steps with the actor
        assert np.isfinite(stats["actor_loss"]) and np.isfinite(stats["entropy"])  # the last actor step's
        before = after
    assert actor_stepped == [True, False, False, True, False, False]
    resumed = _learner(actor_update_every=3)
    resumed.updates = 4  # a restored learner's count: its first update still reports an actor step
    assert np.isfinite(resumed.update(batch)["actor_loss"]) and resumed.updates == 5


@pytest.mark.parametrize(("latent", "passes"), [("online", 3), ("target", 2)])
def test_the_next_action_reads_the_configured_encoders_latent(
    columns: dict[str, np.ndarray], latent: str, passes: int
) -> None:
    """Encoder passes in one update: the observation (trained), the next observation through the
    target encoder, and with ``online`` the next observation again through the trained encoder."""
    learner = _learner(next_action_latent=latent)
    calls: list[str] = []
    learner.encoder.register_forward_hook(lambda *_: calls.append("online"))
    learner.target_encoder.register_forward_hook(lambda *_: calls.append("target"))
    batch = batch_from_columns(columns)
    learner.update(batch)
    assert len(calls) == passes and calls.count("target") == 1
    with pytest.raises(ConfigError, match=r"sac\.next_action_latent: expected online or target"):
        SACConfig(next_action_latent="both")  # type: ignore[arg-type]


def test_pose_targets_scale_the_position_and_fold_the_yaw_to_a_quarter_turn() -> None:
    yaw = 0.3
    quarter_turned = [yaw, yaw + np.pi / 2]
    privileged = torch.tensor(
        [[0.02, -0.04, 0.03, np.cos(y / 2), 0.0, 0.0, np.sin(y / 2), 0.2, 1.0] for y in quarter_turned],
        dtype=torch.float32,
    )
    targets = pose_targets(privileged, scale=0.02)
    np.testing.assert_allclose(targets[0, :3].numpy(), [1.0, -2.0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(targets[0, 3:].numpy(), [np.sin(4 * yaw), np.cos(4 * yaw)], atol=1e-6)
    np.testing.assert_allclose(targets[1].numpy(), targets[0].numpy(), atol=1e-5)  # the same faces


def test_the_pose_loss_trains_the_encoder_to_locate_the_target_and_skips_rows_without_privileged_state(
    columns: dict[str, np.ndarray],
) -> None:
    """At weight 1 the encoder learns to locate the target; at 0 the head is only a probe of the
    latent, which falls behind."""
    batch = batch_from_columns(columns)
    trained, probed = _learner(pose_weight=1.0), _learner(pose_weight=0.0)
    first = probed.update(batch)["pose_loss"]
    trained.update(batch)
    for _ in range(40):
        fitted, measured = trained.update(batch), probed.update(batch)
    assert measured["pose_loss"] < first  # the probe learns too
    assert fitted["pose_loss"] < 0.8 * measured["pose_loss"]
    blind = dict(columns)
    blind["mask"] = columns["mask"].copy()
    blind["mask"][:, MODALITIES.index("privileged")] = False
    assert trained.update(batch_from_columns(blind))["pose_loss"] == 0.0
