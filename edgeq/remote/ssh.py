"""A small, strict SSH connection for benchmarking devices (paramiko, in the style of fabric).

Why strict: a benchmark tool is pointed at lab boxes with fresh installs, so silently
trusting host keys would teach users to ignore man-in-the-middle warnings. Unknown keys
are refused unless ``accept_new_host_key`` (OpenSSH's ``accept-new``) and a changed key is
always refused. Passwords come only from ``EDGEQ_SSH_PASSWORD`` or a TTY prompt and never
appear in messages or logs. What a command prints is collected through ``capture.Capture``
(bounded); where to connect and which keys to trust is ``ssh_config``'s job.
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import paramiko

from edgeq.remote.common import Cancelled, CommandResult, command_error, describe_command, tail
from edgeq.remote.capture import STDERR_LIMIT, STDOUT_LIMIT, Capture, OutputLimitExceeded, limit_error
from edgeq.remote.ssh_config import (DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE, SSHTarget, load_known_hosts,
                                    record_host_key, resolve_target, split_host)
from edgeq.errors import RemoteError
from edgeq.text import printable

PASSWORD_ENV = "EDGEQ_SSH_PASSWORD"
_PROMPT_LOCK = threading.Lock()  # parallel hosts must not prompt on the TTY at the same time
# paramiko logs transport-thread tracebacks at ERROR; without a handler Python prints them to
# stderr next to our own, clearer message. Errors reach the user through RemoteError instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("unknown host key")
        self.key = key


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys, or record them (accept-new). Changed keys never reach this."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.target.accept_new_host_key:
            raise _UnknownHostKey(key)
        record_host_key(self.target.known_hosts, self.target.host_key_name, key)


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _Wakeup:
    """Wakes ``run``'s loop when the transport thread feeds either stream of a channel.

    Not ``select`` on the channel: ``Channel.fileno`` makes an OS pipe that
    ``Channel.close`` closes while the transport thread may still be writing to it
    (measured: 1 run in 6 of an output flood), and paramiko takes that write's EBADF
    for a socket error and drops the whole connection. A ``threading.Event`` has no fd.
    """

    def __init__(self, channel: paramiko.Channel) -> None:
        self._event = threading.Event()
        channel.in_buffer.set_event(self)
        channel.in_stderr_buffer.set_event(self)

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        """BufferedPipe's call when one buffer empties; ignored, the other may hold data."""

    def reset(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)


class Connection:
    """``with Connection(target) as c: c.run("uname -a")`` -- one authenticated SSH session."""

    def __init__(self, target: SSHTarget, *, _depth: int = 0) -> None:
        self.target = target
        self._depth = _depth
        self._client: Optional[paramiko.SSHClient] = None
        self._gateway: Optional[Connection] = None
        self._sftp: Optional[paramiko.SFTPClient] = None

    def __enter__(self) -> "Connection":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def transport(self) -> paramiko.Transport:
        assert self._client is not None, "connection not open"
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(f"the connection to {self.target.label} was lost")
        return transport

    def open(self) -> None:
        """Connect, check the host key, authenticate (keys, agent, then password if any)."""
        password = os.environ.get(PASSWORD_ENV) or None
        try:
            try:
                self._connect(password)
            except paramiko.AuthenticationException:
                if password is not None or not sys.stdin.isatty():
                    raise
                with _PROMPT_LOCK:
                    password = getpass.getpass(f"password for {self.target.label}: ")
                self._connect(password)
        except BaseException:
            self.close()
            raise

    def _connect(self, password: Optional[str]) -> None:
        target = self.target
        self.close()
        client = paramiko.SSHClient()
        for known in (*target.extra_known_hosts, target.known_hosts):
            if known.is_file():
                load_known_hosts(client.get_host_keys(), known)
        client.set_missing_host_key_policy(_HostKeyPolicy(target))
        self._client = client
        timeout = target.connect_timeout
        try:
            client.connect(
                target.host_key_alias or target.hostname, port=target.port, username=target.user,
                password=password, key_filename=list(target.identity_files) or None,
                allow_agent=not target.identities_only,
                look_for_keys=not target.identity_files and not target.identities_only,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                sock=self._open_socket(),
            )
        except _UnknownHostKey as exc:
            raise RemoteError(
                f"unknown host key for {target.host_key_name}: {_fingerprint(exc.key)} "
                f"(not in {target.known_hosts}); refusing to connect",
                hint="check the fingerprint on the device (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), "
                "then rerun with --accept-new-host-key to record it",
            ) from None
        except paramiko.BadHostKeyException as exc:
            raise RemoteError(
                f"the host key of {target.host_key_name} has CHANGED: the server offers "
                f"{_fingerprint(exc.key)}, {target.known_hosts} expects {_fingerprint(exc.expected_key)}; "
                "refusing to connect (this could be a man-in-the-middle attack)",
                hint=f"if the device was reinstalled, remove the old key with "
                f"ssh-keygen -R '{target.host_key_name}' -f {target.known_hosts}",
            ) from None
        except paramiko.AuthenticationException as exc:
            if password is None and sys.stdin.isatty() and not os.environ.get(PASSWORD_ENV):
                raise
            tried = ", ".join(target.identity_files) or "default keys"
            raise RemoteError(
                f"authentication failed for {target.label} ({exc}; tried {tried}, ssh-agent"
                f"{', password' if password else ''})",
                hint=f"check --user and --identity, add the key to ssh-agent, or set {PASSWORD_ENV}",
            ) from None
        except (socket.timeout, TimeoutError):
            raise RemoteError(
                f"timed out after {timeout:g} s connecting to {target.label}",
                hint="is the device up and reachable? raise the limit with --timeout",
            ) from None
        except (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError):
            raise RemoteError(
                f"cannot connect to {target.label}: connection refused",
                hint="is sshd running on the device, and is the port right (--port)?",
            ) from None
        except socket.gaierror as exc:
            raise RemoteError(f"cannot resolve host {printable(repr(target.hostname))}: {exc.strerror}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if isinstance(exc, paramiko.SSHException) and ("banner" in str(exc) or "No existing session" in str(exc)):
                raise RemoteError(f"{target.label} accepted the connection but did not complete the SSH "
                                  f"handshake within {timeout:g} s", hint="is this an SSH port? raise --timeout "
                                  "for a slow device") from None
            raise RemoteError(f"SSH connection to {target.label} failed: {printable(str(exc) or type(exc).__name__)}"
                              ) from None
        self.transport.set_keepalive(target.keepalive)

    def _open_socket(self) -> Any:
        """A TCP socket, or a socket-like channel through ProxyJump hosts or a ProxyCommand.

        Opening it here (not in paramiko) lets HostKeyAlias name the key independently of
        the address, and puts the connect timeout on every hop.
        """
        target = self.target
        if target.proxy_command:
            return paramiko.ProxyCommand(target.proxy_command)
        if not target.proxy_jump:
            sock = socket.create_connection((target.hostname, target.port), timeout=target.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Nagle costs ~40 ms per command
            return sock
        if self._depth > 8:
            raise RemoteError(f"ProxyJump chain for {target.alias} is too long (a loop in the ssh config?)")
        *before, last = [hop.strip() for hop in target.proxy_jump.split(",")]
        hop = resolve_target(
            last, identity=Path(target.identity_files[0]) if target.identity_files else None,
            ssh_config=target.ssh_config, known_hosts=target.known_hosts,
            accept_new_host_key=target.accept_new_host_key, connect_timeout=target.connect_timeout,
            proxy_jump=",".join(before) if before else None,
        )
        self._gateway = Connection(hop, _depth=self._depth + 1)
        self._gateway.open()
        try:
            return self._gateway.transport.open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=target.connect_timeout
            )
        except paramiko.ChannelException as exc:
            raise RemoteError(f"jump host {hop.label} cannot reach {target.label}: {exc}") from None

    def close(self) -> None:
        for closer in (self._sftp, self._client, self._gateway):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # closing a half-dead connection must not mask the real error
                    pass
        self._sftp = self._client = self._gateway = None

    def run(
        self, command: str, *, check: bool = True, timeout: Optional[float] = None,
        on_stderr_line: Optional[Callable[[str], None]] = None, cancel: Optional[threading.Event] = None,
    ) -> CommandResult:
        """Run ``command`` (a shell string: quote every argument with shlex.quote).

        Streams stderr lines to ``on_stderr_line``; raises RemoteError on a non-zero exit
        (with ``check``) or after ``timeout`` seconds, ``Cancelled`` once ``cancel`` is set.
        The channel is closed on the way out; killing the remote process is the caller's job.
        """
        try:
            channel = self.transport.open_session(timeout=self.target.connect_timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteError(f"cannot start a command on {self.target.label}: {exc}") from None
        wake = _Wakeup(channel)
        out = Capture("stdout", STDOUT_LIMIT)
        err = Capture("stderr", STDERR_LIMIT, on_line=on_stderr_line or (lambda line: None))
        shown = describe_command(command)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                wake.reset()  # before looking: a feed from now on wakes the wait below
                got = False
                while channel.recv_ready():
                    out.feed(channel.recv(65536))
                    got = True
                while channel.recv_stderr_ready():
                    err.feed(channel.recv_stderr(65536))
                    got = True
                if not got and channel.exit_status_ready() and (channel.eof_received or channel.closed):
                    break
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                if deadline is not None and time.monotonic() > deadline:
                    text = tail(err.text(), out.text())
                    raise RemoteError(f"timed out after {timeout:g} s on {self.target.label}: {shown}"
                                      + (f"\n{text}" if text else ""))
                if not self.transport.is_active():
                    raise RemoteError(f"the connection to {self.target.label} was lost while running: {shown}")
                if not got:
                    wake.wait(0.1)
            err.finish()
            status = channel.recv_exit_status()
        except OutputLimitExceeded as exc:
            raise limit_error(self.target.label, exc, command) from None
        finally:
            channel.close()
        result = CommandResult(command, out.text(), err.text(), status)
        if check and status != 0:
            raise command_error(self.target.label, result)
        return result

    def put(self, local: Path, remote: str) -> None:
        """Upload one file by SFTP; fall back to ``cat >`` on devices without an SFTP server."""
        try:
            if self._sftp is None:
                assert self._client is not None, "connection not open"
                self._sftp = self._client.open_sftp()
            self._sftp.put(str(local), remote)
            return
        except (paramiko.SSHException, EOFError) as exc:
            if self._sftp is not None:
                raise RemoteError(f"SFTP upload of {local} to {self.target.label} failed: {exc}") from None
        except OSError as exc:
            raise RemoteError(f"SFTP upload of {local} to {self.target.label}:{remote} failed: {exc}") from None
        self._put_with_cat(local, remote)

    def _put_with_cat(self, local: Path, remote: str) -> None:
        command = f"cat > {shlex.quote(remote)}"
        channel = self.transport.open_session(timeout=self.target.connect_timeout)
        try:
            channel.exec_command(command)
            with local.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 16), b""):
                    channel.sendall(block)
            channel.shutdown_write()
            status = channel.recv_exit_status()
            stderr = channel.makefile_stderr("rb").read(STDERR_LIMIT).decode("utf-8", "replace")  # bounded
        finally:
            channel.close()
        if status != 0:
            raise command_error(self.target.label, CommandResult(command, "", stderr, status))


__all__ = ["Connection", "PASSWORD_ENV", "SSHTarget", "resolve_target", "split_host", "record_host_key",
           "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_KEEPALIVE"]
