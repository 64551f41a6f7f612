"""The two kinds of device ``edgeq bench`` runs on: a host over SSH, or a local subprocess.

Both offer the same steps (open, probe, stage, run_script, close), collect output through
the same bounded ``Capture`` and read the device script's lines through the same strict
``protocol`` parser, so a misbehaving device fails the same way on either. Whatever
happens, close() kills what was started and removes the remote temp dir.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from edgeq.remote.common import TEMP_PREFIX, Cancelled, CommandResult, describe_command
from edgeq.remote import device_script as ds
from edgeq.remote.capture import STDERR_LIMIT, STDOUT_LIMIT, Capture, OutputLimitExceeded, limit_error
from edgeq.remote.protocol import parse_pid, protocol_error
from edgeq.remote.report import DeviceInfo
from edgeq.remote.ssh import Connection
from edgeq.console import info, warn
from edgeq.errors import EdgeqError, RemoteError, ToolMissingError
from edgeq.text import printable, shorten

PROBE_TIMEOUT = 120.0  # the probe imports nothing heavy; a device silent this long is hung
_PROBE_LABEL = "-c <edgeq probe script>"  # what messages show instead of the 40-line probe


class RemoteDevice:
    """A host reached over SSH; files live in a fresh ``mktemp -d`` dir removed by close()."""

    def __init__(self, host: str, connection: Connection, python: str, keep_remote: bool) -> None:
        self.host, self.connection, self.python, self.keep_remote = host, connection, python, keep_remote
        self.address = connection.target.label
        self.directory: Optional[str] = None
        self.pid: Optional[int] = None

    def open(self) -> None:
        self.connection.open()

    def probe(self) -> DeviceInfo:
        """One round trip: make the temp dir (``mktemp -d``), then ask the device's Python.

        mktemp prints the dir on stderr, which is read as it arrives: close() knows what to
        remove even if the probe then hangs, floods its output or is interrupted.
        """
        py = shlex.quote(self.python)
        first: list[str] = []

        def line(text: str) -> None:
            if not first:
                first.append(text.strip())
                if text.startswith("/") and posixpath.basename(first[0]).startswith(TEMP_PREFIX):
                    self.directory = first[0]  # from here on close() removes it, whatever the probe says

        result = self.connection.run(
            f'mktemp -d "${{TMPDIR:-/tmp}}/{TEMP_PREFIX}XXXXXX" >&2 && if command -v {py} >/dev/null 2>&1; '
            f"then {py} -c {shlex.quote(ds.PROBE_CODE)}; else echo EDGEQ-NO-PYTHON; fi", check=False,
            timeout=PROBE_TIMEOUT, on_stderr_line=line)
        result = dataclasses.replace(result, command=f"mktemp -d ... && {py} {_PROBE_LABEL}")
        if self.directory is None and result.exit_status == 0:
            made = first[0] if first else ""
            raise protocol_error(self.host, f"mktemp returned {printable(repr(shorten(made, 100)), keep='')}, "
                                 "not a new temp dir")
        return DeviceInfo.from_probe(self.host, self.address, self.python, result)

    def stage(self, files: Sequence[tuple[Path, str]]) -> list[str]:
        """Upload (local, remote name) pairs into the temp dir; return the remote paths."""
        assert self.directory is not None
        for local, name in files:
            self.connection.put(local, posixpath.join(self.directory, name))
        return [posixpath.join(self.directory, name) for _, name in files]

    def run_script(self, args: Sequence[str], *, on_line: Callable[[str], None],
                   cancel: threading.Event, timeout: Optional[float]) -> CommandResult:
        assert self.directory is not None
        argv = [self.python, posixpath.join(self.directory, "device_script.py"), *args]
        command = f"cd {shlex.quote(self.directory)} && exec {shlex.join(argv)}"  # shlex.join quotes each

        def line(text: str) -> None:
            if text.startswith(ds.PID_PREFIX):
                pid = parse_pid(self.host, text)  # malformed: RemoteError, and the run ends
                self.pid = self.pid or pid  # the first one counts: the script prints exactly one
            on_line(text)

        try:
            result = self.connection.run(command, check=False, timeout=timeout, on_stderr_line=line, cancel=cancel)
        except BaseException:
            self._kill()
            raise
        self.pid = None
        return result

    def _kill(self) -> None:
        """SIGKILL the device script -- only if /proc confirms the pid is still ours."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        mark = shlex.quote(self.directory or TEMP_PREFIX)
        self._quietly(f"if [ -d /proc/{pid} ]; then grep -qF -- {mark} /proc/{pid}/cmdline && kill -KILL {pid}; "
                      f"elif [ ! -d /proc/self ]; then kill -KILL {pid}; fi 2>/dev/null; true")

    def _quietly(self, command: str) -> None:
        """Cleanup commands: retry once on a fresh connection, warn instead of raising."""
        try:
            self.connection.run(command, timeout=30)
        except EdgeqError:
            try:
                self.connection.open()
                self.connection.run(command, timeout=30)
            except EdgeqError as exc:
                warn(printable(f"cleanup on {self.host} failed ({exc.message}); run it by hand: {command}"))

    def close(self) -> None:
        try:
            self._kill()
            if self.directory and self.keep_remote:
                info(printable(f"kept {self.host}:{self.directory} (--keep-remote)", keep=""))
            elif self.directory:
                self._quietly(f"rm -rf -- {shlex.quote(self.directory)}")
                self.directory = None
        finally:
            self.connection.close()


class LocalDevice:
    """``--host local``: the same device script in a local subprocess, the no-network baseline."""

    def __init__(self, python: Optional[str]) -> None:
        self.host, self.address, self.python = "local", "localhost (subprocess)", python or sys.executable
        self.process: Optional[subprocess.Popen[bytes]] = None

    def open(self) -> None:  # nothing to connect to
        return None

    def probe(self) -> DeviceInfo:
        result = self._run([self.python, "-c", ds.PROBE_CODE], label=f"{shlex.quote(self.python)} {_PROBE_LABEL}",
                           on_line=lambda line: None, cancel=threading.Event(), timeout=PROBE_TIMEOUT)
        return DeviceInfo.from_probe(self.host, self.address, self.python, result)

    def stage(self, files: Sequence[tuple[Path, str]]) -> list[str]:
        return [str(local) for local, _ in files]  # nothing to copy: the files are already here

    def run_script(self, args: Sequence[str], *, on_line: Callable[[str], None],
                   cancel: threading.Event, timeout: Optional[float]) -> CommandResult:
        def line(text: str) -> None:
            if text.startswith(ds.PID_PREFIX):
                parse_pid(self.host, text)  # checked as on a remote host: the same device, the same rules
            on_line(text)

        argv = [self.python, ds.__file__, *args]
        return self._run(argv, label=shlex.join(argv), on_line=line, cancel=cancel, timeout=timeout)

    def _run(self, argv: list[str], *, label: str, on_line: Callable[[str], None], cancel: threading.Event,
             timeout: Optional[float]) -> CommandResult:
        """Run ``argv`` with bounded capture; a failure in a reader thread ends the process and is raised here."""
        hint = "point --python at a Python >= 3.8 (an executable file)"
        try:
            # A new session: the terminal's Ctrl-C reaches only us, and we decide how the child ends.
            self.process = proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise ToolMissingError(f"{printable(repr(self.python))} was not found", hint=hint) from None
        except OSError as exc:
            raise ToolMissingError(f"cannot run {printable(repr(self.python))}: {exc.strerror or exc}",
                                   hint=hint) from None
        out, err = Capture("stdout", STDOUT_LIMIT), Capture("stderr", STDERR_LIMIT, on_line=on_line)
        failures: list[BaseException] = []

        def pump(stream: Any, capture: Capture) -> None:
            try:
                for chunk in iter(lambda: stream.read1(65536), b""):
                    capture.feed(chunk)
                capture.finish()
            except BaseException as exc:  # the limit, or a protocol error from on_line: end the child
                failures.append(exc)
                self._kill_group(proc)

        readers = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, err), daemon=True)]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while proc.poll() is None and not failures:
                if cancel.is_set():
                    raise Cancelled()
                if deadline is not None and time.monotonic() > deadline:
                    raise RemoteError(f"timed out after {timeout:g} s: {describe_command(label)}")
                time.sleep(0.05)
        finally:
            self._kill_group(proc)  # gone already, unless cancelled or timed out; its children too
            proc.wait()
            for reader in readers:  # they drain what is left in the pipes, then see EOF
                reader.join(5)
            self.close()
        if failures:
            if isinstance(failures[0], OutputLimitExceeded):
                raise limit_error(self.address, failures[0], label) from None
            raise failures[0]
        return CommandResult(label, out.text(), err.text(), proc.returncode)

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the child's whole session (it leads it): children it forked must not outlive it."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass

    def close(self) -> None:
        if self.process is not None:
            self._kill_group(self.process)
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self.process = None


Device = Union[RemoteDevice, LocalDevice]

__all__ = ["RemoteDevice", "LocalDevice", "Device", "PROBE_TIMEOUT"]
