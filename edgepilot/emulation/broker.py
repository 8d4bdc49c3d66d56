"""MQTT brokers for the fleet.

* :class:`EmbeddedBroker`: amqtt started in-process on a background asyncio loop: the
  zero-setup default of ``edgepilot emulate`` / ``make demo`` (MQTT 3.1.1 only, which is
  what the agents speak). amqtt is imported only here, so a device never needs it.
* :class:`MosquittoBroker`: a real ``mosquitto`` (Debian package) as a child process
  with a generated config: what the tests use and what deployments should run (see
  ``hardware/mosquitto/`` for the TLS / password / ACL config shipped for them).

Both bind 127.0.0.1 by default and report the port they listen on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from edgepilot.hardware.mosquitto.credentials import shipped_settings

log = logging.getLogger("edgepilot.broker")

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class EmbeddedBroker:
    """amqtt in this process, on its own thread and event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> int:
        try:
            from amqtt.broker import Broker  # optional dependency (extra "fleet")
        except ImportError as err:
            raise RuntimeError("the embedded broker needs amqtt: pip install 'edgepilot[fleet]' "
                               "(or use --broker-kind mosquitto)") from err
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 10_000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        class _Broker(Broker):
            """amqtt 0.12 sends a connecting client the retained messages of every topic
            filter *any* session subscribed to (and iterates that dict while awaiting).
            Only a session's own subscriptions get its retained messages here: a UE must
            never see another UE's retained status."""

            async def _publish_retained_messages_for_subscription(self, subscription, session) -> None:
                subs = self._subscriptions.get(subscription[0], [])
                if not any(s.client_id == session.client_id for s, _ in subs):
                    return
                await super()._publish_retained_messages_for_subscription(subscription, session)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = _Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as err:  # reported to start()
                self._error = err
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed to start: {self._error}") from self._error
        if not self._ready.is_set():
            raise RuntimeError(f"embedded broker did not start within {timeout} s")
        log.info("embedded MQTT broker (amqtt) on %s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(timeout=10)
        except Exception as err:  # shutting down anyway
            log.debug("amqtt shutdown: %s", err)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> "EmbeddedBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("mosquitto not found: apt-get install mosquitto (scripts/bootstrap.sh does it)")


class MosquittoBroker:
    """A real Mosquitto on a loopback port, as a child process.

    ``extra_config`` lines are appended to the generated config (e.g. ``password_file``
    and ``acl_file``); ``allow_anonymous`` defaults to true unless a password file is
    given. Persistence is on, so a restart keeps retained messages and queued QoS 1
    messages of persistent sessions."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", workdir: str | os.PathLike | None = None,
                 extra_config: list[str] | None = None, allow_anonymous: bool = True,
                 settings: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgepilot-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_config = list(extra_config or [])
        self.allow_anonymous = allow_anonymous
        # persistence, packet size and queue settings: the shipped config's
        self.settings = shipped_settings() if settings is None else list(settings)
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            *self.settings,
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            # started as root, Mosquitto drops to user "mosquitto", which cannot read a
            # private scratch directory: a test / emulation broker keeps the caller's user
            *(["user root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            *self.extra_config,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        return self.conf_path

    def start(self, timeout: float = 10.0) -> int:
        self.write_config()
        log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)], stdout=log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log_file.close()
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}: {self.log_tail()}")
        return self.port

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file), then wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """kill -9: a crash (nothing saved beyond what persistence already wrote)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, down_seconds: float = 0.5) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "MosquittoBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()
