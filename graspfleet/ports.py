"""Free loopback ports for the servers graspfleet starts itself.

Ports are drawn below the kernel's ephemeral range. A server that restarts on its port (Redis,
a replay shard) must not find it taken by a client's outgoing connection: a client retrying
``connect(127.0.0.1:P)`` while nothing listens can be given P itself as its source port and
connect to itself (TCP simultaneous open), holding P until it gives up. They are drawn above
the ports Ray's workers use by default, too.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20_000
"""Above Ray's default worker ports (10002–19999), which a Ray node on the same host may take."""


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago."""
    high = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(_LOWEST, high) if high > _LOWEST + 100 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    with socket.socket() as s:  # a crowded range: the OS's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
