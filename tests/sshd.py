"""A real OpenSSH server on 127.0.0.1 for tests: its own host key, authorized key and config.

Why a real sshd rather than a paramiko test server: the bench code must work against the
OpenSSH a Raspberry Pi runs (host key types, SFTP subsystem, exec semantics, signals), and
only the real daemon shows that. Each server gets ``SetEnv TMPDIR=<dir>`` so that the
remote temp dirs edgeq creates land in a per-server directory a test can inspect.

Usage in a test module (``tests.sshd`` when tests/ is a package)::

    from tests.sshd import sshd_factory  # noqa: F401  (a module-scoped fixture)

    def test_x(sshd_factory): server = sshd_factory.start()  # .port .user .identity .leftovers()
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.conftest import require_tool as _require_tool

SSHD = "/usr/sbin/sshd"


def require_tool(path_or_name: str) -> str:
    """The tool's path, or skip the test (fail it under ``CI=true``): the project's one policy."""
    return _require_tool(path_or_name, "apt-get install openssh-server openssh-client")


def keygen(path: Path, comment: str = "edgeq-test") -> Path:
    """A fresh passphrase-less ed25519 key pair at ``path`` / ``path.pub``."""
    subprocess.run(
        [require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL,
    )
    return path


def fingerprint(pub: Path) -> str:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it (the reference the tests compare against)."""
    out = subprocess.run([require_tool("ssh-keygen"), "-lf", str(pub)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sshd:
    """One running server and what a client needs to reach it."""

    port: int
    user: str
    identity: Path
    host_key: Path
    device_tmp: Path
    directory: Path
    process: subprocess.Popen = field(repr=False)
    host: str = "127.0.0.1"

    @property
    def host_key_name(self) -> str:
        return f"[{self.host}]:{self.port}"

    def known_hosts_line(self) -> str:
        key_type, key_b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{self.host_key_name} {key_type} {key_b64}\n"

    def write_known_hosts(self, path: Path) -> Path:
        with path.open("a") as handle:
            handle.write(self.known_hosts_line())
        return path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_key.with_suffix(".pub"))

    def leftovers(self) -> list[str]:
        """edgeq temp dirs left on the 'device' (must be empty after every test)."""
        return sorted(p.name for p in self.device_tmp.glob("edgeq-bench.*"))

    def log(self) -> str:
        path = self.directory / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class SshdFactory:
    """Starts servers on demand and stops them all at teardown."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: list[Sshd] = []
        require_tool(SSHD)
        require_tool("ssh-keygen")
        try:
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation dir
        except PermissionError:
            pass
        self.client_key = keygen(base / "client_key")

    def start(self, *, host_key: Optional[Path] = None, authorized: Optional[Path] = None) -> Sshd:
        """A new sshd; ``host_key`` reuses a key (or a different one, for changed-key tests)."""
        directory = self.base / f"sshd{len(self.servers)}"
        device_tmp = directory / "device tmp"  # a space: remote paths must be quoted
        device_tmp.mkdir(parents=True)
        if host_key is None:
            host_key = keygen(directory / "host_key", comment="edgeq-test-host")
        authorized_keys = directory / "authorized_keys"
        authorized_keys.write_text((authorized or self.client_key.with_suffix(".pub")).read_text())
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {directory}/sshd.pid\n"
            "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"PubkeyAuthentication yes\nAuthorizedKeysFile {authorized_keys}\nStrictModes no\n"
            "Subsystem sftp internal-sftp\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n"
            f'SetEnv "TMPDIR={device_tmp}"\nMaxStartups 50\nMaxSessions 50\nLogLevel INFO\n'
        )
        log = (directory / "sshd.log").open("wb")
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL)
        server = Sshd(port, getpass.getuser(), self.client_key, host_key, device_tmp, directory, process)
        self.servers.append(server)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited with {process.returncode}:\n{server.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return server
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {port}:\n{server.log()}")

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFactory]:
    """A factory of loopback sshd instances, shared by a test module (keys are cheap, TF is not)."""
    factory = SshdFactory(tmp_path_factory.mktemp("sshd"))
    yield factory
    factory.stop_all()
