"""The trajectory an actor writes to replay: the columns of a grasp transition, as a replay ``Signature``.

Replay knows only signatures; this is where the grasp cell's observation spec meets them. A
transition holds every observation array of the spec (``observation=True``: the sampler returns
the next step's too), the Cartesian action (twist, gripper width, grip force: 8 floats), the
reward, the episode flags, and whether the scripted expert chose the action (``intervention``:
demonstrations and takeovers, actors/intervention.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from graspfleet.networks import ACTION_DIM
from graspfleet.sim.config import CellConfig
from graspfleet.spec import observation_spec as make_spec
from replay.signature import ColumnSpec, Signature


def grasp_signature(observation_spec: Mapping[str, object] | None = None) -> Signature:
    """The signature of graspfleet transitions: every observation array of the grasp cell's spec,
    the Cartesian action, the reward, the episode flags and the intervention flag."""
    spec = make_spec(CellConfig()) if observation_spec is None else observation_spec
    columns = [
        ColumnSpec(name, np.dtype(s.dtype).name, tuple(s.shape), observation=True)  # type: ignore[attr-defined]
        for name, s in spec.items()
    ]
    columns += [
        ColumnSpec("action", "float32", (ACTION_DIM,)),
        ColumnSpec("reward", "float32", ()),
        ColumnSpec("terminated", "bool", ()),
        ColumnSpec("truncated", "bool", ()),
        ColumnSpec("intervention", "bool", ()),
    ]
    return Signature(columns)
