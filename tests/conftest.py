"""Shared fixtures (helpers that tests import are in tests/helpers.py)."""

from __future__ import annotations

import signal

import pytest

from graspfleet.sim.config import CellConfig


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop `graspfleet train` children with SIGINT, as Ctrl-C in a terminal would. A suite
    started as a background job (``make test &``, ``nohup``) inherits SIGINT ignored, and so would
    those children — they would never see the Ctrl-C. Restore the default for them."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def cell_config() -> CellConfig:
    return CellConfig()
