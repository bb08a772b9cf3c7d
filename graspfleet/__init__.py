"""graspfleet's core: what every other layer shares and nothing above it changes.

Configuration machinery (``config``), the observation/action spec (``spec``), the roles
(``interfaces``), the MuJoCo grasp cell (``sim``), SE(3) math (``geometry``), the safe action
pipeline (``actions``), the networks and their weights format (``networks``, ``weights``) and the
scripted controller (``policies``). It imports nothing of actors/, learner/, replay/ or
orchestrator/ (docs/architecture.md, "Layers").
"""

__version__ = "0.1.0"
