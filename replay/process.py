"""A replay shard in a child process (``python -m replay serve``), for benchmarks, tests and launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from graspfleet.processes import start_child
from replay.signature import Signature

READY_MARKER = "replay shard listening on"
SERVE = ("-m", "replay", "serve")
"""The shard command's arguments after the interpreter: the replay service's own entry point."""


class ShardProcess:
    """Starts a shard process with ``signature`` on ``port`` and waits until it listens.

    The child's output is drained by a thread (the last lines are kept for error messages), so
    a long-lived shard never blocks on a full pipe.
    """

    def __init__(
        self,
        port: int,
        signature: Signature,
        workdir: Path,
        args: Sequence[str] = (),
        timeout: float = 60.0,
        host: str = "127.0.0.1",
        serve: Sequence[str] = SERVE,
    ) -> None:
        """``serve``: the command after the interpreter (another entry point that takes the same
        options, such as an application's alias of ``replay serve``, may stand in)."""
        self.port = port
        self.address = f"{host}:{port}"
        spec = workdir / "replay-signature.json"  # one per run directory, rewritten by each start
        spec.write_text(json.dumps(signature.to_mapping()))
        self.command = [
            sys.executable,
            *serve,
            "--port",
            str(port),
            "--host",
            host,
            "--signature",
            str(spec),
            *args,
        ]
        self.output: deque[str] = deque(maxlen=200)
        self.process = self._start(timeout)

    def _start(self, timeout: float) -> subprocess.Popen[str]:
        process = start_child(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()

        def drain() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.output.append(line.rstrip())
                if READY_MARKER in line:
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"replay shard did not start: {' | '.join(self.output)}")
        return process

    def restart(self, timeout: float = 60.0) -> None:
        """Start the shard again (same port, same arguments) after it stopped or was killed."""
        self.process = self._start(timeout)

    def kill(self) -> None:
        """SIGKILL: no final checkpoint."""
        self.process.kill()
        self.process.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (final checkpoint), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
