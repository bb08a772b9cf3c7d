"""A private ``redis-server`` on a free port, for ``graspfleet train`` and the tests.

It binds loopback unless told a host; bound to any other interface (a cluster's head node, so
actors on worker nodes reach it) it requires a password it generates, which travels in its URL.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from graspfleet.ports import free_port
from graspfleet.processes import start_child


class RedisNotInstalled(RuntimeError):
    """``redis-server`` is not on PATH (``make setup`` installs it)."""


class RedisServer:
    """A ``redis-server`` process with append-only persistence in ``directory``; a context manager.

    ``restart()`` stops it and starts it again on the same port and data (to exercise reconnects).
    """

    def __init__(
        self, port: int | None = None, directory: Path | None = None, appendonly: bool = True, host: str = "127.0.0.1"
    ) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RedisNotInstalled("redis-server is not installed: run `make setup` (it installs it with apt-get)")
        self.port = port or free_port()
        self._owned = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="graspfleet-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.host = host
        self.password = None if host == "127.0.0.1" else secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        credentials = "" if self.password is None else f":{self.password}@"
        return f"redis://{credentials}{self.host}:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        assert self.binary is not None
        self.process = start_child(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--save",
                "",
                "--protected-mode",
                "yes",
                *(() if self.password is None else ("--requirepass", self.password)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host=self.host, port=self.port, password=self.password, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
