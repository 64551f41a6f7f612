"""Where to connect and whom to trust: host strings, ~/.ssh/config, known_hosts, key files.

Everything here reads input edgeq does not control -- a host string typed by the user, an
ssh config, a known_hosts file, private keys -- so every value is checked where it is read
and a bad one is a ``UserError`` naming the file, the setting and the fix (exit 2), never
a traceback from deep inside paramiko.
"""

from __future__ import annotations

import getpass
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import paramiko

from edgeq.errors import UserError
from edgeq.text import printable

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 15
PORT_HINT = "ports are 1-65535 (SSH is usually 22)"


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to reach one host, after merging the CLI, ~/.ssh/config and defaults."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    known_hosts: Path
    extra_known_hosts: tuple[Path, ...]
    accept_new_host_key: bool
    connect_timeout: float
    keepalive: int
    proxy_jump: Optional[str]
    proxy_command: Optional[str]
    host_key_alias: Optional[str]
    ssh_config: Optional[Path]

    @property
    def label(self) -> str:
        """``user@host:port`` for messages (printable: the parts come from the CLI and ssh config)."""
        return printable(f"{self.user}@{self.hostname}:{self.port}", keep="")

    @property
    def host_key_name(self) -> str:
        """The known_hosts name OpenSSH uses: ``host`` on port 22, ``[host]:port`` otherwise."""
        name = self.host_key_alias or self.hostname
        return name if self.port == 22 else f"[{name}]:{self.port}"


def _shown(value: object) -> str:
    return repr(printable(str(value), keep=""))


def check_port(value: int, where: str) -> int:
    """``value`` if it is a TCP port; otherwise a UserError naming where it came from."""
    if not 1 <= value <= 65535:
        raise UserError(f"invalid port {value} ({where})", hint=PORT_HINT)
    return value


def split_host(spec: str) -> tuple[Optional[str], str, Optional[int]]:
    """Parse ``[user@]host[:port]`` (``[v6addr]:port`` too) into its parts."""
    user, _, rest = spec.rpartition("@")
    port: Optional[str] = None
    if rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        port = after[1:] if after.startswith(":") else None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host = rest
    if not host or (port is not None and not (port.isascii() and port.isdigit())):
        raise UserError(f"cannot parse host {_shown(spec)}", hint="use HOST, USER@HOST or USER@HOST:PORT")
    number = int(port) if port else None
    if number is not None:
        check_port(number, f"in --host {_shown(spec)}")
    return user or None, host, number


def _regular_file(path: Path, what: str, hint: str) -> None:
    """Refuse a path that exists but is not a regular file (a directory, a FIFO, /dev/zero)."""
    if path.exists() and not path.is_file() and str(path) != os.devnull:
        raise UserError(f"{what} {printable(str(path))} is not a regular file", hint=hint)


def _read_config(path: Path, alias: str) -> dict[str, Any]:
    _regular_file(path, "ssh config", "pass an OpenSSH client config file with --ssh-config")
    try:
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(alias))
    except UnicodeDecodeError:
        raise UserError(f"ssh config {printable(str(path))} is not a text file (it is not valid UTF-8)",
                        hint="pass an OpenSSH client config file with --ssh-config, or -F /dev/null for none") from None
    except OSError as exc:
        raise UserError(f"cannot read ssh config {printable(str(path))}: {exc.strerror or exc}") from None
    except Exception as exc:  # paramiko raises several types for bad configs
        raise UserError(f"cannot read ssh config {printable(str(path))}: {printable(str(exc))}") from None


def _config_number(cfg: dict[str, Any], key: str, name: str, path: Path, default: float, *,
                   integer: bool, low: float, high: float, expect: str) -> float:
    """One numeric ssh config setting, checked: ``Port abc`` is an error naming the file and the fix."""
    raw = cfg.get(key)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:  # NaN fails this too
        raise UserError(f"ssh config {printable(str(path))}: invalid {name} {_shown(raw)}, expected {expect}",
                        hint=f"fix or remove the {name} line")
    return value


def key_file(path: Path, origin: str) -> str:
    """A private key path paramiko can read: it exists and is text (paramiko chokes on binary)."""
    hint = "pass an OpenSSH private key (e.g. ~/.ssh/id_ed25519, not the .pub) with --identity"
    if not path.is_file():
        raise UserError(f"identity file {printable(str(path))} ({origin}) does not exist or is not a file", hint=hint)
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise UserError(f"cannot read identity file {printable(str(path))}: {exc.strerror or exc}") from None
    try:
        head.decode("ascii")
    except UnicodeDecodeError:
        raise UserError(f"identity file {printable(str(path))} ({origin}) is not a text key file", hint=hint) from None
    return str(path)


def resolve_target(
    host: str, *, user: Optional[str] = None, port: Optional[int] = None, identity: Optional[Path] = None,
    ssh_config: Optional[Path] = None, known_hosts: Optional[Path] = None, accept_new_host_key: bool = False,
    connect_timeout: Optional[float] = None, proxy_jump: Optional[str] = None,
) -> SSHTarget:
    """Merge like OpenSSH: values in the host string, then CLI options, then ssh config."""
    spec_user, alias, spec_port = split_host(host)
    if port is not None:
        check_port(port, "--port")
    if connect_timeout is not None and not connect_timeout > 0:
        raise UserError(f"invalid connect timeout {connect_timeout} (--timeout)", hint="give seconds > 0")
    config_path = ssh_config or Path("~/.ssh/config").expanduser()
    if ssh_config is not None and not ssh_config.exists():  # exists(): `-F /dev/null` is an idiom
        raise UserError(f"ssh config {printable(str(ssh_config))} does not exist")
    cfg: dict[str, Any] = {}
    if config_path.exists() and not config_path.is_dir():
        cfg = _read_config(config_path, alias)
    files = [key_file(identity, "--identity")] if identity is not None else []
    for entry in cfg.get("identityfile", []):  # OpenSSH skips missing config keys silently: so do we
        path = Path(os.path.expanduser(entry))
        if path.is_file():
            files.append(key_file(path, f"IdentityFile in {config_path}"))
    user_known = (cfg.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0]
    known = known_hosts or Path(os.path.expanduser(user_known))
    _regular_file(known, "known_hosts file", "pass an OpenSSH known_hosts file with --known-hosts")
    extra = () if known_hosts else (Path("/etc/ssh/ssh_known_hosts"),)
    strict = str(cfg.get("stricthostkeychecking", "ask")).lower()
    jump = proxy_jump if proxy_jump is not None else cfg.get("proxyjump")
    command = cfg.get("proxycommand")
    config_port = int(_config_number(cfg, "port", "Port", config_path, 22, integer=True, low=1, high=65535,
                                          expect="a port number 1-65535"))
    timeout = _config_number(cfg, "connecttimeout", "ConnectTimeout", config_path, DEFAULT_CONNECT_TIMEOUT,
                             integer=False, low=1e-3, high=1e6, expect="seconds > 0")
    keepalive = _config_number(cfg, "serveraliveinterval", "ServerAliveInterval", config_path, DEFAULT_KEEPALIVE,
                               integer=True, low=0, high=1 << 31, expect="whole seconds >= 0")
    return SSHTarget(
        alias=host,
        hostname=cfg.get("hostname", alias),
        port=next(p for p in (spec_port, port, config_port) if p is not None),
        user=spec_user or user or cfg.get("user") or getpass.getuser(),
        identity_files=tuple(dict.fromkeys(files)),
        identities_only=str(cfg.get("identitiesonly", "no")).lower() == "yes",
        known_hosts=known,
        extra_known_hosts=extra,
        accept_new_host_key=accept_new_host_key or strict == "accept-new",
        connect_timeout=float(connect_timeout if connect_timeout is not None else timeout),
        keepalive=int(keepalive),
        proxy_jump=None if not jump or jump.lower() == "none" else jump,
        proxy_command=None if not command or command.lower() == "none" else command,
        host_key_alias=cfg.get("hostkeyalias"),
        ssh_config=ssh_config,
    )


def load_known_hosts(keys: paramiko.HostKeys, path: Path) -> None:
    """Add the keys of an OpenSSH known_hosts file; refuse a file that is not text.

    paramiko's own loader dies with a UnicodeDecodeError on binary data and an
    InvalidHostKey on one bad base64 line. A binary file is refused (it is the wrong file);
    a line that does not parse is skipped, as OpenSSH does.
    """
    hint = "point --known-hosts (or UserKnownHostsFile) at an OpenSSH known_hosts file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read known_hosts file {printable(str(path))}: {exc.strerror or exc}",
                        hint=hint) from None
    bad, text = data.find(b"\0"), ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start if bad < 0 else min(bad, exc.start)
    if bad >= 0:
        line = data[:bad].count(b"\n") + 1
        raise UserError(f"known_hosts file {printable(str(path))} is not a text file (binary data on line {line})",
                        hint=hint)
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except Exception:  # InvalidHostKey, SSHException, or a key blob the key class rejects
            continue
        if entry is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


def record_host_key(path: Path, name: str, key: paramiko.PKey) -> None:
    """Append one known_hosts line (never rewrite the file: it may hold comments or hashes)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefix = ""
        if path.exists() and path.stat().st_size:
            with path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                prefix = "" if existing.read(1) == b"\n" else "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(f"{prefix}{name} {key.get_name()} {key.get_base64()}\n")
    except OSError as exc:
        raise UserError(f"cannot record the host key in {printable(str(path))}: {exc.strerror or exc}",
                        hint="check the known_hosts path (--known-hosts) and its permissions") from None


__all__ = ["SSHTarget", "split_host", "resolve_target", "check_port", "key_file", "load_known_hosts",
           "record_host_key", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_KEEPALIVE"]
