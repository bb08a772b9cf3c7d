"""Child processes that the driver owns: they ignore the terminal's Ctrl-C and die with the driver.

A Ctrl-C in a terminal signals the whole foreground process group. Children started here get
their own session, so only the driver sees it and shuts them down in order (the learner
checkpoints, shards take their final checkpoint, Redis flushes its AOF). On Linux they also ask
the kernel for SIGTERM when the driver dies, so even a SIGKILLed driver leaves no orphans. The
kernel sends it when the *thread* that started the child ends, not only the process: start a
child from a thread that lives as long as the child should (the main thread, or a supervisor's).
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_child(command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in a new session, terminated when this process dies (Linux)."""
    return subprocess.Popen(
        command,
        start_new_session=True,
        preexec_fn=_terminate_with_parent if sys.platform.startswith("linux") else None,
        **kwargs,
    )
