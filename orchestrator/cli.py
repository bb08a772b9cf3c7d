"""The ``graspfleet`` command line."""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand

from graspfleet import __version__
from graspfleet.config import ConfigError, commented_yaml, describe, from_mapping, load, merge_overrides, to_mapping
from graspfleet.interfaces import BackendUnavailable, make_backend
from graspfleet.sim.config import CellConfig, TierConfig
from graspfleet.sim.runner import RunSummary, run_episodes
from graspfleet.sim.tiers import TIER_ORDER, TIERS, get_tier

app = typer.Typer(
    help="graspfleet: distributed actor–learner training of robotic grasping policies.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


class PolicyName(enum.StrEnum):
    scripted = "scripted"
    random = "random"


def _config_file_option(help_text: str) -> Any:
    return typer.Option("--config", "-c", help=help_text, exists=True, dir_okay=False)


SimConfigOption = Annotated[Path | None, _config_file_option("YAML file with `cell:` and `tier:` sections.")]
SimSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one value, e.g. `cell.physics.control_substeps=10` or `tier.modality_dropout=0.3`.",
    ),
]
TrainConfigOption = Annotated[
    Path | None,
    _config_file_option(
        "YAML run config: any of the sections `graspfleet config` prints (the rest keep their defaults)."
    ),
]
TrainSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one key of the run config, e.g. `learning.batch_size=128` or `actors.count=4` "
        "(`graspfleet config --keys` lists them).",
    ),
]


def _train_config_help() -> str:
    """The epilog of ``graspfleet train --help``: the run config's sections and the keys of the
    run's own sections, each with its field docstring (the component sections are listed by name;
    ``graspfleet config --keys`` shows their keys)."""
    from orchestrator.config import RUN_SECTIONS, SECTIONS, TrainConfig

    defaults = TrainConfig()
    paragraphs = ["[bold]The run config[/] (`--config FILE`, `--set KEY=VALUE`; defaults shown):"]
    paragraphs += [f"[cyan]{key}[/] = {json.dumps(value)}: {doc}" for key, value, doc in describe(defaults)
                   if "." not in key]  # fmt: skip
    for section in RUN_SECTIONS:
        paragraphs += [f"[cyan]{key}[/] = {json.dumps(value)}: {doc}" for key, value, doc in
                       describe(getattr(defaults, section), f"{section}.")]  # fmt: skip
    others = ", ".join(section for section in SECTIONS if section not in RUN_SECTIONS)
    paragraphs.append(f"Component sections {others}: `graspfleet config --keys` lists every key with its meaning.")
    return "\n\n".join(paragraphs)


def resolve_config(tier: str, config_file: Path | None, overrides: list[str] | None) -> tuple[CellConfig, TierConfig]:
    """Defaults ← YAML file ← ``--set`` overrides, validated into the cell and tier configs."""
    base: dict[str, Any] = {"cell": to_mapping(CellConfig()), "tier": to_mapping(get_tier(tier))}
    if config_file is not None:
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: the top level must be a mapping")
        unknown = sorted(set(loaded) - {"cell", "tier"})
        if unknown:
            raise ConfigError(f"{config_file}: unknown section {unknown[0]!r} (known: cell, tier)")
        base = merge_overrides(base, [])
        for section, values in loaded.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{config_file}: section {section!r} must be a mapping")
            base[section] = {**base[section], **values}
    data = merge_overrides(base, overrides or [])
    unknown = sorted(set(data) - {"cell", "tier"})
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r} (known: cell, tier)")
    return from_mapping(CellConfig, data["cell"], "cell"), from_mapping(TierConfig, data["tier"], "tier")


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


@app.command()
def sim(
    tier: Annotated[str, typer.Option(help=f"Difficulty tier: {', '.join(TIER_ORDER)}.")] = "T0",
    cells: Annotated[int, typer.Option(min=1, help="Grasp cells stepped together in this process.")] = 4,
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to run before stopping.")] = 40,
    policy: Annotated[PolicyName, typer.Option(help="Who drives the arm.")] = PolicyName.scripted,
    seed: Annotated[int, typer.Option(help="Seed of the scenes, physics draws and sensor noise.")] = 0,
    backend: Annotated[
        str, typer.Option(help="Simulator backend: mujoco (or isaacgym, not available here).")
    ] = "mujoco",
    config_file: SimConfigOption = None,
    overrides: SimSetOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Show the resolved cell and tier config as YAML and exit.")
    ] = False,
) -> None:
    """Run grasp cells with a scripted or random policy, through the safe action pipeline, and
    show what happens (success and outcome rates, holds, out-of-bounds proposals, steps/s)."""
    from graspfleet.actions.cartesian import CartesianBackend
    from graspfleet.policies import RandomCartesianPolicy, ScriptedGraspPolicy

    try:
        cell_config, tier_config = resolve_config(tier, config_file, overrides)
        if print_config:
            print(yaml.safe_dump({"cell": to_mapping(cell_config), "tier": to_mapping(tier_config)}, sort_keys=False))
            return
        batch = CartesianBackend(make_backend(backend, cell_config, tier_config, cells, seed=seed), cell_config)
    except (ConfigError, BackendUnavailable, ValueError) as exc:
        raise _fail(str(exc)) from None
    driver: Any
    if policy is PolicyName.scripted:
        driver = ScriptedGraspPolicy(cell_config, cells)
    else:
        driver = RandomCartesianPolicy(cell_config, cells, seed=seed)

    if json_output:
        summary = run_episodes(batch, driver, episodes, seed=seed)
        console.print_json(json.dumps({"tier": tier_config.name, "policy": policy.value, **summary.as_dict()}))
        return

    console.print(
        f"[bold]graspfleet sim[/] tier [cyan]{tier_config.name}[/] ({tier_config.description}), "
        f"{cells} cells, policy [cyan]{policy.value}[/], seed {seed}"
    )
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("episodes", total=episodes, stats="")

        def update(s: RunSummary) -> None:
            o = s.outcomes
            progress.update(
                task,
                completed=s.episodes,
                stats=(
                    f"{s.steps_per_second:,.0f} steps/s  success {o['success']}  collision {o['collision']}  "
                    f"slip {o['slip']}  overshoot {o['force_overshoot']}  holds {s.holds}"
                ),
            )

        summary = run_episodes(batch, driver, episodes, seed=seed, on_step=update)
    console.print(_summary_table(summary))


def _summary_table(summary: RunSummary) -> Table:
    table = Table(title=f"outcomes: success rate {summary.rate('success'):.1%}", show_edge=False)
    table.add_column("outcome")
    table.add_column("episodes", justify="right")
    table.add_column("rate", justify="right")
    for name, count in summary.outcomes.items():
        table.add_row(name, str(count), f"{summary.rate(name):.1%}")
    table.add_row("fell off the table", str(summary.fell), f"{summary.fell / max(summary.episodes, 1):.1%}")
    steps = max(summary.control_steps, 1)
    table.add_row("[dim]holds (per control step)[/]", str(summary.holds), f"{summary.holds / steps:.2%}")
    table.add_row(
        "[dim]out-of-bounds proposals (per step)[/]",
        str(summary.out_of_bounds_proposed),
        f"{summary.out_of_bounds_proposed / steps:.2%}",
    )
    table.caption = (
        f"{summary.episodes} episodes, {summary.control_steps:,} control steps in {summary.seconds:.1f} s "
        f"({summary.steps_per_second:,.0f} steps/s); mean return {summary.as_dict()['mean_return']}"
    )
    return table


@app.command()
def tiers() -> None:
    """List the curriculum's difficulty tiers."""
    table = Table(title="difficulty tiers", show_edge=False)
    for column in (
        "tier",
        "objects",
        "shapes",
        "spawn x/y (m)",
        "occlusion",
        "dropout",
        "description",
    ):
        table.add_column(column)
    for tier in TIERS.values():
        table.add_row(
            tier.name,
            str(tier.num_objects),
            ", ".join(tier.shapes),
            f"±{max(-tier.spawn_x.low, tier.spawn_x.high):.2f} / ±{max(-tier.spawn_y.low, tier.spawn_y.high):.2f}",
            f"{tier.occlusion_start_probability:.0%}/step",
            f"{tier.modality_dropout:.0%}",
            tier.description,
        )
    console.print(table)


@app.command("config")
def show_config(
    config_file: TrainConfigOption = None,
    overrides: TrainSetOption = None,
    section: Annotated[str | None, typer.Option(help="Show only this section (e.g. learning, actors, sac).")] = None,
    keys: Annotated[
        bool,
        typer.Option("--keys", help="A table of every key (`graspfleet train --set KEY=VALUE`): value and meaning."),
    ] = False,
) -> None:
    """Print the run config of `graspfleet train` (defaults, then --config, then --set) as YAML
    that documents itself: every section and key with what it means, in units; --config takes it
    back as it is. --keys: the same as a table of dotted keys."""
    from orchestrator.config import SECTIONS, TrainConfig

    try:
        config: Any = load(TrainConfig, config_file, overrides or [])
        if section is not None:
            if section not in SECTIONS:
                raise ConfigError(f"unknown section {section!r} (sections: {', '.join(SECTIONS)})")
            config = getattr(config, section)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    prefix = "" if section is None else f"{section}."
    if keys:
        table = Table(title="graspfleet train --set KEY=VALUE", show_edge=False)
        for column in ("key", "value", "meaning"):
            table.add_column(column, overflow="fold")
        for key, value, doc in describe(config, prefix):
            table.add_row(key, json.dumps(value), doc)
        console.print(table)
        return
    print(commented_yaml(config) if section is None else f"{section}:\n" + commented_yaml(config, "  "), end="")


class _TrainCommand(TyperCommand):
    """``graspfleet train``: its ``--help`` epilog is the run config's documentation, built when
    shown (building it imports the configs' modules, torch among them)."""

    @property
    def epilog(self) -> str:
        return _train_config_help()

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass


@app.command(cls=_TrainCommand)
def train(
    serial: Annotated[
        bool, typer.Option("--serial", help="Run the whole loop in this process (no Ray, no network).")
    ] = False,
    tier: Annotated[str | None, typer.Option(help="Difficulty tier (default from the config: T0).")] = None,
    env_steps: Annotated[int | None, typer.Option(help="Budget of environment steps.")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where metrics and the final policy go.")] = None,
    config_file: TrainConfigOption = None,
    overrides: TrainSetOption = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Show the resolved run config (as `graspfleet config`) and exit.")
    ] = False,
    shards: Annotated[int, typer.Option(min=1, help="Replay shards to start (distributed mode).")] = 2,
    redis: Annotated[
        str | None,
        typer.Option(
            envvar="GRASPFLEET_REDIS",
            help="Redis URL of an existing control plane (default: a private one); may hold a password.",
        ),
    ] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join, e.g. auto (default: a local one).")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Port of the learner's /metrics endpoint.")] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address the private Redis, the replay shards and /metrics bind and are reached at "
            "(default: loopback; with --address, this node's address in the Ray cluster)."
        ),
    ] = None,
    replay: Annotated[
        list[str] | None,
        typer.Option(help="Address of a running replay shard (repeatable) instead of starting --shards of its own."),
    ] = None,
) -> None:
    """Train a grasping policy: Ray actors, gRPC replay shards, a Redis control plane and the learner,
    all started on this machine unless --address/--redis point elsewhere; --serial runs it in one process."""
    from orchestrator.config import TrainConfig
    from orchestrator.serial import train_serial

    extra = [*(overrides or [])]
    if tier is not None:
        extra.append(f"tier={tier}")
    if env_steps is not None:
        extra.append(f"budget.env_steps={env_steps}")
    try:
        config = load(TrainConfig, config_file, extra)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if print_config:
        print(commented_yaml(config), end="")
        return
    directory = run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    shard_count = f"{len(replay)} running shards" if replay else f"{shards} shards"
    mode = "--serial" if serial else f"({config.actors.count} actors × {config.actors.cells} cells, {shard_count})"
    budget = f"{config.budget.env_steps:,} env steps"
    console.print(f"[bold]graspfleet train[/] {mode} tier [cyan]{config.tier}[/], {budget} → {directory}")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("env steps", total=config.budget.env_steps, stats="filling replay")

        def update(row: dict[str, float]) -> None:
            if "eval_success_rate" in row:
                low, high = row["eval_ci_low"], row["eval_ci_high"]
                progress.console.print(
                    f"evaluation after {int(row['eval_updates']):,} updates: success "
                    f"{row['eval_success_rate']:.0%} (95 % CI {low:.2f}–{high:.2f})"
                )
                return
            progress.update(
                task,
                completed=int(row["env_steps"]),
                stats=(
                    f"success {row['success_rate']:.0%}  updates {int(row['updates'])}  "
                    f"weights v{int(row['weights_version'])}  α {row['alpha']:.3f}"
                ),
            )

        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.yaml").write_text(commented_yaml(config))
        try:
            if serial:
                try:
                    report = train_serial(config, directory, on_progress=update)
                except ConfigError as exc:
                    raise _fail(str(exc)) from None
            else:
                from orchestrator.distributed import RunSetupError, train_distributed
                from orchestrator.fleet import ActorFailing

                try:
                    report = train_distributed(
                        config,
                        directory,
                        shards=shards,
                        redis_url=redis,
                        address=address,
                        metrics_port=metrics_port,
                        host=host,
                        replay=replay,
                        on_progress=update,
                    )
                except RunSetupError as exc:
                    raise _fail(str(exc)) from None
                except ActorFailing as exc:
                    console.print(
                        f"[bold red]error:[/] {exc}\nthe learner's checkpoint and the run so far are in {directory}; "
                        "the same command resumes it once the fault is fixed"
                    )
                    raise typer.Exit(1) from None
        except KeyboardInterrupt:
            resumed = "its learner (replay starts empty)" if serial else "its learner and replay"
            console.print(
                f"[yellow]interrupted[/]: the policy and metrics so far are in {directory}; the same command "
                f"with the same --run-dir resumes {resumed} from its checkpoint"
            )
            raise typer.Exit(130) from None
    console.print(
        f"{report.env_steps:,} env steps, {report.updates:,} updates, weights v{report.weights_version}, "
        f"{report.successes}/{report.episodes} successful episodes in {report.seconds:.0f} s; final policy in "
        f"{directory / 'policy.safetensors'}"
    )
    if report.best_evaluation is not None:
        best = report.best_evaluation
        console.print(
            f"best evaluated policy (success {best['success_rate']:.0%} on {TIER_ORDER[int(best['tier_index'])]} "
            f"after {best['updates']:,.0f} updates) in {directory / 'best_policy.safetensors'}"
        )


@app.command("eval")
def evaluate_policy(
    checkpoint: Annotated[
        Path, typer.Option(help="A policy.safetensors (from a run dir) to evaluate.", exists=True, dir_okay=False)
    ],
    tier: Annotated[str, typer.Option(help="Difficulty tier.")] = "T0",
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to run.")] = 100,
    cells: Annotated[int, typer.Option(min=1, help="Cells stepped together.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation scenes.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The training config (default: config.yaml beside the checkpoint, else the defaults).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Evaluate a policy deterministically: success rate with a 95 % (Wilson) interval, outcome counts."""
    from actors.evaluation import evaluate
    from orchestrator.config import TrainConfig

    beside = checkpoint.parent / "config.yaml"
    try:
        config = load(TrainConfig, config_file or (beside if beside.is_file() else None), [])
        result = evaluate(
            checkpoint, config.cell, get_tier(tier), episodes, cells, seed, network=config.network, action=config.action
        )
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    low, high = result.interval
    if json_output:
        print(
            json.dumps(
                {
                    "tier": tier,
                    "episodes": episodes,
                    "weights_version": result.weights_version,
                    "success_rate": result.success_rate,
                    "ci95": [low, high],
                    "outcomes": result.outcomes,
                    "timeouts": result.timeouts,
                    "mean_return": result.mean_return,
                }
            )
        )
        return
    console.print(
        f"weights v{result.weights_version} on {tier}: success {result.success_rate:.1%} "
        f"(95 % CI {low:.1%}–{high:.1%}) over {episodes} episodes; episodes with each outcome {result.outcomes}, "
        f"timeouts {result.timeouts}; "
        f"mean return {result.mean_return:.2f}"
    )


RunDirOption = Annotated[
    Path | None, typer.Option(help="A run directory (its control_plane.json says where Redis is).")
]
RedisOption = Annotated[
    str | None, typer.Option(envvar="GRASPFLEET_REDIS", help="Redis URL of the control plane (with --run).")
]
RunOption = Annotated[str | None, typer.Option(help="Run name (with --redis).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _control_plane(run_dir: Path | None, redis: str | None, run: str | None) -> Any:
    """The control plane a run directory points at (or the one ``--redis``/``--run`` name)."""
    from orchestrator.control_plane import ControlPlane

    if run_dir is not None:
        pointer = run_dir / "control_plane.json"
        if not pointer.is_file():
            raise _fail(f"{pointer} does not exist: is {run_dir} a distributed run directory?")
        located = json.loads(pointer.read_text())
        redis, run = redis or located["redis_url"], run or located["run"]
    if redis is None or run is None:
        raise _fail("give --run-dir, or --redis and --run")
    return ControlPlane(redis, run, retries=1)


TIER_CHANGES = ("promotion", "rollback", "regression")


@app.command()
def status(
    run_dir: RunDirOption = None, redis: RedisOption = None, run: RunOption = None, json_output: JsonOption = False
) -> None:
    """What a running job is doing, read from its control plane: state, weights, shards, actors,
    the curriculum and its tier history, recent events."""
    from orchestrator.control_plane import SHARD_HEARTBEAT_MAX_AGE
    from orchestrator.curriculum import CURRICULUM_STREAM

    plane = _control_plane(run_dir, redis, run)
    try:
        curriculum = plane.curriculum_state()
        report: dict[str, Any] = {
            "run": plane.run,
            "state": plane.state(),
            "weights_version": plane.latest_version(),
            "shards": plane.shards(),
            "shards_down": {
                address: round(age, 1)
                for address, age in plane.shard_heartbeat_ages().items()
                if age > SHARD_HEARTBEAT_MAX_AGE
            },
            "actors": {"sim": plane.actor_counts("sim")},
            "curriculum": None if curriculum is None else curriculum["controller"],
            "tier_history": [e for e in plane.events(stream=CURRICULUM_STREAM) if e["kind"] in TIER_CHANGES],
            "events": plane.events()[-10:],
        }
    except Exception as exc:
        raise _fail(f"control plane not reachable: {exc}") from None
    if json_output:
        print(json.dumps(report))
        return
    table = Table(title=f"run {plane.run}", show_edge=False, show_header=False)
    for key, value in report["state"].items():
        table.add_row(key, value)
    table.add_row("weights version", str(report["weights_version"]))
    table.add_row("replay shards", ", ".join(report["shards"]) or "none alive")
    if report["shards_down"]:
        down = ", ".join(f"{address} (silent {age:.0f} s)" for address, age in report["shards_down"].items())
        table.add_row("replay shards down", down)
    for kind, counts in report["actors"].items():
        table.add_row(f"actors ({kind})", _actor_counts_line(counts))
    state = report["curriculum"]
    if state is not None:
        window = state["window"]
        table.add_row(
            "curriculum",
            f"tier {state['tier']} (generation {state['generation']}), learning-rate scale {state['lr_scale']:g}, "
            f"{state['promotions']} promotions, {state['rollbacks']} rollbacks",
        )
        table.add_row("gate", f"{sum(window)} successes in the last {len(window)} episodes")
    console.print(table)
    if report["tier_history"]:
        history = Table(title="tier history")
        for column in ("time (UTC)", "event", "tier", "updates", "why", "weights", "lr scale"):
            history.add_column(column)
        for event in report["tier_history"]:
            history.add_row(*_tier_change_row(event))
        console.print(history)
    for event in report["events"]:
        console.print(
            f"  {event['id']}  {event['kind']}  "
            + " ".join(f"{k}={v}" for k, v in event.items() if k not in ("id", "kind", "time"))
        )


@app.command()
def stop(run_dir: RunDirOption = None, redis: RedisOption = None, run: RunOption = None) -> None:
    """Ask a running job to end: it drains its actors (each flushes its trajectories), checkpoints
    the learner and exits as if its budget were spent; the run directory resumes later."""
    plane = _control_plane(run_dir, redis, run)
    try:
        plane.request_stop()
        plane.append_event("stop_requested", {})
    except Exception as exc:
        raise _fail(f"control plane not reachable: {exc}") from None
    console.print(f"run {plane.run}: stop requested")


def _actor_counts_line(counts: dict[str, int | None]) -> str:
    line = f"{counts['running'] or 0} running of {counts['desired']} desired"
    return line + (f", {counts['draining']} draining" if counts["draining"] else "")


def _tier_change_row(event: dict[str, str]) -> tuple[str, ...]:
    if event["kind"] == "promotion":
        why = f"gate {float(event['gate_success_rate']):.0%} over {event['gate_episodes']} episodes"
    else:
        why = (
            f"validation {float(event['validation_success_rate']):.0%} success, "
            f"{float(event['validation_collision_rate']):.0%} collisions vs reference "
            f"{float(event['reference_success_rate']):.0%}, {float(event['reference_collision_rate']):.0%}"
        )
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(event["time"]))),
        event["kind"],
        f"{event['from_tier']} → {event['to_tier']}",
        event["updates"],
        why,
        f"v{event['weights_version_before']} → v{event['weights_version_after']}",
        f"{float(event['lr_scale_before']):g} → {float(event['lr_scale_after']):g}",
    )


curriculum_app = typer.Typer(help="The curriculum's audit trail.", no_args_is_help=True)
app.add_typer(curriculum_app, name="curriculum")


@curriculum_app.command("events")
def curriculum_events(
    run_dir: RunDirOption = None, redis: RedisOption = None, run: RunOption = None, json_output: JsonOption = False
) -> None:
    """Print every curriculum event (promotions, rollbacks, regressions, learning-rate changes,
    gate resets) with the metrics that justified it, oldest first."""
    from orchestrator.curriculum import CURRICULUM_STREAM

    plane = _control_plane(run_dir, redis, run)
    try:
        events = plane.events(count=100_000, stream=CURRICULUM_STREAM)
    except Exception as exc:
        raise _fail(f"control plane not reachable: {exc}") from None
    if json_output:
        for event in events:
            print(json.dumps(event))
        return
    if not events:
        console.print("no curriculum events yet")
    for event in events:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(event["time"])))
        fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("id", "kind", "time"))
        console.print(f"{stamp}  {event['kind']:<10}  {fields}")


actors_app = typer.Typer(help="The run's actors: how many of each kind.", no_args_is_help=True)
app.add_typer(actors_app, name="actors")
ACTOR_KINDS = ("sim",)
"""Kinds of actor a run reconciles (real-arm proxies, ``arm``, will join them)."""


@actors_app.command("scale")
def actors_scale(
    count: Annotated[int, typer.Argument(min=0, help="Desired number of actors.")],
    kind: Annotated[str, typer.Option(help="Kind of actor: sim (randomized simulators).")] = "sim",
    run_dir: RunDirOption = None,
    redis: RedisOption = None,
    run: RunOption = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait until the run has exactly COUNT running (0: do not wait).")
    ] = 0.0,
) -> None:
    """Set the desired actor count; the running job starts actors or drains them (each flushes
    its trajectories before it stops) within a reconcile period."""
    if kind not in ACTOR_KINDS:
        raise _fail(f"--kind {kind}: runs reconcile only {', '.join(ACTOR_KINDS)} actors")
    plane = _control_plane(run_dir, redis, run)
    try:
        before = plane.desired_actors(kind)
        plane.set_desired_actors(count, kind)
        plane.append_event(
            "actors_scaled", {"actor_kind": kind, "from": "unset" if before is None else before, "to": count}
        )
    except Exception as exc:
        raise _fail(f"control plane not reachable: {exc}") from None
    console.print(f"run {plane.run}: desired {kind} actors {before} → {count}")
    status = plane.state().get("status")
    if status != "training":
        console.print(f"[yellow]the run is {status or 'not started'}[/]: the count applies when it runs again")
        if wait > 0:
            raise _fail("nothing to wait for: no driver is reconciling this run")
    if wait <= 0:
        return
    deadline = time.monotonic() + wait
    while True:
        counts = plane.actor_counts(kind)
        if counts["running"] == count and not counts["draining"]:
            console.print(f"run {plane.run}: {_actor_counts_line(counts)}")
            return
        if time.monotonic() > deadline:
            raise _fail(f"after {wait:g} s: {_actor_counts_line(counts)}")
        time.sleep(0.5)


replay_app = typer.Typer(help="The sharded replay service.", no_args_is_help=True)
app.add_typer(replay_app, name="replay")


@replay_app.command(
    "serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def replay_serve(
    ctx: typer.Context,
    signature: Annotated[
        str, typer.Option(help="'grasp' (the grasp cell's transitions) or a JSON/YAML file.")
    ] = "grasp",
    train_config: Annotated[
        Path | None,
        typer.Option(
            help="A training config (YAML): capacity, sampler, minimum size and rate limiter as `graspfleet train` "
            "sets them for its own shards (in place of those options)."
        ),
    ] = None,
    shards: Annotated[int, typer.Option(min=1, help="With --train-config: how many shards the run has.")] = 1,
) -> None:
    """Serve one replay shard until SIGINT/SIGTERM: `python -m replay serve` with the grasp signature;
    every other option is that command's (--help lists them)."""
    from actors.trajectory import grasp_signature
    from replay.__main__ import load_signature, serve_main

    argv = list(ctx.args)
    if "--help" in argv or "-h" in argv:
        serve_main(["--help"])
    try:
        if train_config is not None:
            from orchestrator.config import TrainConfig
            from orchestrator.distributed import shard_options

            options = shard_options(load(TrainConfig, train_config, []), shards)
            argv += [arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
        table_signature = grasp_signature() if signature == "grasp" else load_signature(Path(signature))
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    status = serve_main(argv, table_signature)
    if status:
        raise typer.Exit(status)


@replay_app.command("info")
def replay_info(
    address: Annotated[list[str], typer.Option("--address", "-a", help="Shard address host:port (repeatable).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the size, counters and signature of replay shards."""
    from google.protobuf.json_format import MessageToDict

    from replay.client import ReplayError, shard_info

    infos = {}
    for addr in address:
        try:
            infos[addr] = shard_info(addr)
        except ReplayError as exc:
            raise _fail(f"{addr}: {exc}") from None
    if json_output:
        print(json.dumps({a: MessageToDict(i, preserving_proto_field_name=True) for a, i in infos.items()}))
        return
    table = Table(title="replay shards", show_edge=False)
    for column in (
        "shard",
        "size / capacity",
        "MB",
        "sampler",
        "inserted",
        "sampled",
        "evicted",
        "rejected",
        "tiers",
        "checkpoints",
    ):
        table.add_column(column)
    for addr, i in infos.items():
        table.add_row(
            addr,
            f"{i.size:,} / {i.capacity:,}",
            f"{i.bytes / 1e6:.1f}",
            i.sampler,
            f"{i.inserted_steps:,}",
            f"{i.sampled_items:,}",
            f"{i.evicted_steps:,}",
            f"{i.rejected_chunks:,}",
            ", ".join(f"T{k}:{v}" for k, v in sorted(i.tier_counts.items())),
            str(i.checkpoints),
        )
    console.print(table)


@app.command()
def version() -> None:
    """Print graspfleet's version."""
    print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
