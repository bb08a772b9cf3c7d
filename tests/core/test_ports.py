"""Ports for restartable servers come from below the ephemeral range and above Ray's worker ports."""

from __future__ import annotations

import socket

from graspfleet.ports import _ephemeral_low, free_port


def test_free_ports_are_bindable_and_never_ephemeral() -> None:
    ports = {free_port() for _ in range(50)}
    assert all(20_000 <= p < _ephemeral_low() for p in ports)  # clear of Ray's worker ports too
    assert len(ports) > 40  # drawn at random, not one fixed port
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))
