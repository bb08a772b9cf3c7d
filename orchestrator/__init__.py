"""Orchestration: the CLI, the training loop and its serial and distributed backends, the launcher,
the actor fleet, supervisors, the control-plane client, curriculum wiring, run artifacts and metrics.

The top layer: it composes actors/, learner/ and replay/ over the core (graspfleet/) and nothing
below imports it (docs/architecture.md, the import-linter contracts in pyproject.toml).
"""
