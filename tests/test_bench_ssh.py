"""The SSH connection against a real OpenSSH server on 127.0.0.1 (no TensorFlow needed)."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgeq.remote.ssh import Connection, resolve_target
from edgeq.errors import RemoteError, UserError

try:
    from sshd import Sshd, SshdFactory, free_port, keygen, require_tool, sshd_factory  # noqa: F401  (fixture)
except ImportError:  # tests/ is a package
    from tests.sshd import Sshd, SshdFactory, free_port, keygen, require_tool, sshd_factory  # noqa: F401


@pytest.fixture(autouse=True)
def _no_agent_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the keys a test passes may authenticate: no agent, no password, no user ssh config."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("EDGEQ_SSH_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def server(sshd_factory: SshdFactory) -> Sshd:
    return sshd_factory.start()


def _target(server: Sshd, known_hosts: Path, **options: object):  # type: ignore[no-untyped-def]
    options.setdefault("identity", server.identity)
    return resolve_target(f"127.0.0.1:{server.port}", user=server.user, known_hosts=known_hosts,
                          ssh_config=options.pop("ssh_config", Path(os.devnull)), **options)  # type: ignore[arg-type]


def test_unknown_host_key_is_refused_with_its_fingerprint(server: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(RemoteError) as caught:
        Connection(_target(server, known)).open()
    assert server.fingerprint in caught.value.message and server.fingerprint.startswith("SHA256:")
    assert "--accept-new-host-key" in (caught.value.hint or "")
    assert not known.exists()


def test_accept_new_host_key_records_it(server: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "sub" / "known_hosts"
    with Connection(_target(server, known, accept_new_host_key=True)) as conn:
        assert conn.run("echo ok").stdout == "ok\n"
    assert known.read_text() == server.known_hosts_line()
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    with Connection(_target(server, known)) as conn:  # now known: no flag needed
        assert conn.run("true").exit_status == 0
    assert known.read_text() == server.known_hosts_line()  # not recorded twice


def test_changed_host_key_is_always_refused(server: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"{server.host_key_name} {key_type} {key}\n")
    before = known.read_text()
    with pytest.raises(RemoteError) as caught:
        Connection(_target(server, known, accept_new_host_key=True)).open()
    assert "CHANGED" in caught.value.message and server.fingerprint in caught.value.message
    assert "ssh-keygen -R" in (caught.value.hint or "")
    assert known.read_text() == before


def test_wrong_identity_is_an_authentication_error(server: Sshd, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEQ_SSH_PASSWORD", "hunter2-never-shown")
    wrong = keygen(tmp_path / "wrong")
    with pytest.raises(RemoteError) as caught:
        Connection(_target(server, server.write_known_hosts(tmp_path / "kh"), identity=wrong)).open()
    assert "authentication failed" in caught.value.message
    assert "hunter2" not in str(caught.value)


def test_closed_port_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    target = resolve_target(f"127.0.0.1:{free_port()}", known_hosts=tmp_path / "kh", ssh_config=Path(os.devnull))
    with pytest.raises(RemoteError, match="connection refused"):
        Connection(target).open()
    assert time.monotonic() - start < 15


def test_silent_server_times_out(tmp_path: Path) -> None:
    """A port that accepts TCP but never speaks SSH (a hung device) must not hang us."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        target = resolve_target(f"127.0.0.1:{listener.getsockname()[1]}", known_hosts=tmp_path / "kh",
                                ssh_config=Path(os.devnull), connect_timeout=1.5)
        start = time.monotonic()
        with pytest.raises(RemoteError):
            Connection(target).open()
        assert time.monotonic() - start < 10


def test_run_returns_streams_and_raises_with_the_tail(server: Sshd, tmp_path: Path) -> None:
    lines: list[str] = []
    with Connection(_target(server, server.write_known_hosts(tmp_path / "kh"))) as conn:
        result = conn.run("echo out; echo one >&2; echo two >&2", on_stderr_line=lines.append)
        assert (result.stdout, result.stderr, result.exit_status, lines) == ("out\n", "one\ntwo\n", 0, ["one", "two"])
        assert conn.run("exit 4", check=False).exit_status == 4
        with pytest.raises(RemoteError) as caught:
            conn.run("echo boom >&2; exit 3")
        assert "echo boom >&2; exit 3" in caught.value.message and "| boom" in caught.value.message
        with pytest.raises(RemoteError, match="timed out"):
            conn.run("sleep 30", timeout=0.5)
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        from edgeq.remote import Cancelled

        with pytest.raises(Cancelled):
            conn.run("sleep 30", cancel=cancel)


def test_hostile_paths_are_quoted(server: Sshd, tmp_path: Path) -> None:
    name = "it's \"q\" $(touch pwned) `touch pwned2`; x.bin"
    local = tmp_path / name
    local.write_bytes(b"payload")
    remote = str(server.device_tmp / name)
    with Connection(_target(server, server.write_known_hosts(tmp_path / "kh"))) as conn:
        conn.put(local, remote)
        assert conn.run(f"cd {shlex.quote(str(server.device_tmp))} && cat -- {shlex.quote(remote)}").stdout == "payload"
        conn._put_with_cat(local, remote + ".cat")  # the fallback for devices without SFTP
        assert conn.run(f"cat {shlex.quote(remote + '.cat')}").stdout == "payload"
    assert sorted(p.name for p in server.device_tmp.iterdir()) == [name, name + ".cat"]
    for path in server.device_tmp.iterdir():
        path.unlink()


def test_ssh_config_hostname_user_port_identity_and_proxyjump(sshd_factory: SshdFactory, server: Sshd,
                                                              tmp_path: Path) -> None:
    device = sshd_factory.start()
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.identity}\n"
        f"Host board\n  HostName 127.0.0.1\n  Port {device.port}\n  User {device.user}\n"
        f"  IdentityFile {device.identity}\n  ProxyJump jump\n"
    )
    known = device.write_known_hosts(server.write_known_hosts(tmp_path / "kh"))
    target = resolve_target("board", ssh_config=config, known_hosts=known)
    assert (target.hostname, target.port, target.proxy_jump) == ("127.0.0.1", device.port, "jump")
    jump_log = server.log().count("Accepted publickey")
    with Connection(target) as conn:
        assert conn.run("echo via-jump").stdout == "via-jump\n"
    assert server.log().count("Accepted publickey") == jump_log + 1  # the jump host authenticated us
    assert "Accepted publickey" in device.log()


def test_ssh_agent_provides_the_key(server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --identity: the key comes from a real ssh-agent (as on a developer's machine)."""
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen([require_tool("ssh-agent"), "-D", "-a", str(socket_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert time.monotonic() < deadline and agent.poll() is None, "ssh-agent did not start"
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        subprocess.run([require_tool("ssh-add"), "-q", str(server.identity)], check=True,
                       env=dict(os.environ), capture_output=True)
        known = server.write_known_hosts(tmp_path / "kh")
        target = resolve_target(f"127.0.0.1:{server.port}", user=server.user, known_hosts=known,
                                ssh_config=Path(os.devnull))
        assert target.identity_files == ()
        with Connection(target) as conn:
            assert conn.run("echo agent").stdout == "agent\n"
    finally:
        agent.terminate()
        agent.wait()


# ----------------------------------------------------------------------------- hostile input
def test_binary_known_hosts_is_refused_before_connecting(server: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_bytes(server.known_hosts_line().encode() + b"\x00\xff\xfe binary \x1b[2J\n")
    with pytest.raises(UserError) as caught:
        Connection(_target(server, known)).open()
    assert f"known_hosts file {known} is not a text file (binary data on line 2)" in caught.value.message
    assert "\x1b" not in str(caught.value) and "--known-hosts" in (caught.value.hint or "")


def test_hashed_known_hosts_with_broken_lines_still_verifies(server: Sshd, tmp_path: Path) -> None:
    """Lines paramiko cannot parse are skipped (as OpenSSH does); hashed names still match."""
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line())
    subprocess.run([require_tool("ssh-keygen"), "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    hashed = known.read_text()
    assert hashed.startswith("|1|") and server.host_key_name not in hashed  # really hashed
    known.write_text("garbage line\nbroken ssh-ed25519 !!!not-base64!!!\n" + hashed)  # ssh-keygen -H refuses these
    with Connection(_target(server, known)) as conn:
        assert conn.run("echo hashed").stdout == "hashed\n"


def test_accept_new_into_an_unwritable_known_hosts_is_a_user_error(server: Sshd, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot record the host key"):
        Connection(_target(server, blocker / "known_hosts", accept_new_host_key=True)).open()


def _running(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("command, needle", [
    ("head -c 40000000 /dev/zero", "more than 32 MiB to stdout"),
    ("yes edgeq-flood-marker >&2", "more than 1 MiB to stderr"),
    ("head -c 9000000 /dev/zero | tr '\\0' x >&2", "more than 1 MiB to stderr"),  # one endless line
])
def test_output_floods_are_capped(server: Sshd, tmp_path: Path, command: str, needle: str) -> None:
    lines: list[str] = []
    with Connection(_target(server, server.write_known_hosts(tmp_path / "kh"))) as conn:
        start = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            conn.run(command, on_stderr_line=lines.append)
        assert time.monotonic() - start < 20
        assert conn.run("echo still usable").stdout == "still usable\n"
    assert needle in caught.value.message and "runaway device" in caught.value.message
    assert all(len(line) < 70_000 for line in lines)
    deadline = time.monotonic() + 10
    while _running("edgeq-flood-marker"):  # the flooding command died with its channel
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_failed_multiline_command_shows_its_first_line_and_output_tail(server: Sshd, tmp_path: Path) -> None:
    with Connection(_target(server, server.write_known_hosts(tmp_path / "kh"))) as conn:
        with pytest.raises(RemoteError) as caught:
            conn.run("printf '\\033]0;pwned\\007bad \\033[2Jthing\\n' >&2; exit 7\n# second line\n# third line")
    message = caught.value.message
    assert "exit 7 …" in message and "second line" not in message and "status 7" in message
    output = message.split("\n", 1)[1]
    assert output == "  | bad thing" and "\x1b" not in message
