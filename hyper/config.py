"""Where hyper keeps its files and which host (control plane) a command talks to.

``$HYPER_HOME`` (default ``~/.hyper``) holds ``hosts.yaml`` (mode 0600, never secrets: AWS credentials
come from the standard chain and named profiles) and one data directory per local host. With no
``hosts.yaml`` at all, every command uses the implicit ``local`` host, so a fresh install runs jobs at once.
Selection order: ``--host`` option, then ``$HYPER_HOST``, then the host selected in ``hosts.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hyper.errors import HyperError

DEFAULT_HOST = "local"


def hyper_home() -> Path:
    home = os.environ.get("HYPER_HOME")
    return Path(home).expanduser() if home else Path.home() / ".hyper"


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600  # everything hyper keeps under HYPER_HOME, whatever the umask


def tighten(path: Path, mode: int) -> None:
    """Take group and other access away from a path of ours that has it (made before, or under umask 0)."""
    st = path.lstat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, mode, follow_symlinks=False)


def private_dir(path: Path) -> Path:
    """Create ``path`` and the directories from HYPER_HOME down to it as 0700 (whatever the umask) and
    tighten existing ones: scripts, outputs and the database live there. A directory outside HYPER_HOME
    (a job's ``-o`` directory) is only created, as ``mkdir -p`` would."""
    path = Path(path)
    home = hyper_home()
    if path != home and home not in path.parents:
        path.mkdir(parents=True, exist_ok=True)
        return path
    chain = [path, *[p for p in path.parents if p == home or home in p.parents]]
    for d in reversed(chain):
        try:
            d.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass
        tighten(d, PRIVATE_DIR)
    return path


def private_file(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """Open (creating) a file as 0600 without following a symlink at its name; returns the descriptor."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class Host:
    name: str = DEFAULT_HOST
    type: str = "local"  # local | aws
    main_region: str | None = None
    profile: str | None = None
    table_prefix: str | None = None
    endpoint_url: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        """A local host's directory: database, agent lock and log, job logs, worker work dirs."""
        if self.name == DEFAULT_HOST:
            return hyper_home() / "local"
        return hyper_home() / "hosts" / self.name

    def to_dict(self) -> dict:
        """The hosts.yaml body: set fields, with the host's extra settings (shard counts...) beside them."""
        body = {k: v for k, v in asdict(self).items() if v not in (None, {}) and k not in ("name", "extra")}
        body.update(self.extra or {})
        return body


@dataclass
class Settings:
    """Timing knobs; environment variables override them (tests make them short)."""

    agent_idle: float = 30.0  # the local agent exits after this long with no work and no workers
    worker_idle: float = 5.0  # a worker exits after this long without a job to claim
    lease: float = 60.0  # a claimed job's lease; workers renew it every lease/4
    kill_grace: float = 10.0  # SIGTERM then SIGKILL after this long (PBS kill_delay)
    tick: float = 0.1  # agent loop period

    @classmethod
    def from_env(cls) -> "Settings":
        s = cls()
        for name in ("agent_idle", "worker_idle", "lease", "kill_grace", "tick"):
            raw = os.environ.get(f"HYPER_{name.upper()}")
            if raw:
                try:
                    setattr(s, name, float(raw))
                except ValueError:
                    raise HyperError(f"HYPER_{name.upper()}={raw!r} is not a number of seconds",
                                     f"set it like HYPER_{name.upper()}=5") from None
        return s


def hosts_file() -> Path:
    return hyper_home() / "hosts.yaml"


def load_hosts() -> tuple[dict[str, Host], str]:
    """All configured hosts and the selected one's name; the implicit local host is always there."""
    path = hosts_file()
    hosts = {DEFAULT_HOST: Host()}
    selected = DEFAULT_HOST
    if not path.exists():
        return hosts, selected
    import yaml  # only when a hosts file exists: keeps qsub's cold start short on a fresh install

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HyperError(f"cannot read {path}: {exc}".splitlines()[0],
                         "fix the file or remove it to fall back to the local host") from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts") or {}, dict):
        raise HyperError(f"{path} is not a hosts file (a mapping with `hosts:`)",
                         "fix the file or remove it to fall back to the local host")
    for name, body in (data.get("hosts") or {}).items():
        if not isinstance(body, dict) or not isinstance(name, str):
            raise HyperError(f"{path}: host {name!r} is not a mapping", "fix the file or remove that host")
        body = dict(body)
        known = {k: body.pop(k) for k in list(body) if k in Host.__dataclass_fields__ and k not in ("extra", "name")}
        body.pop("name", None)  # the key is the name
        hosts[name] = Host(name=name, extra=body, **known)
    selected = data.get("selected") or DEFAULT_HOST
    return hosts, selected


def save_hosts(hosts: dict[str, Host], selected: str) -> None:
    """Write hosts.yaml atomically with mode 0600 (it names profiles and endpoints, never secrets)."""
    import yaml

    path = hosts_file()
    private_dir(path.parent)
    body = {"selected": selected,
            # the implicit local host is written only to keep its settings (admins, env_deny)
            "hosts": {n: h.to_dict() for n, h in hosts.items() if n != DEFAULT_HOST or h.extra}}
    tmp = path.with_suffix(".tmp")
    try:  # a leftover tmp (or a symlink planted there) would keep its own mode: start from a new file
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = private_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(body, fh, sort_keys=False)
    os.replace(tmp, path)


def current_host(override: str | None = None) -> Host:
    hosts, selected = load_hosts()
    name = override or os.environ.get("HYPER_HOST") or selected
    if name not in hosts:
        raise HyperError(f"unknown host {name!r}", f"known hosts: {', '.join(sorted(hosts))}; "
                         "create one with `hyper hosts create-host`")
    return hosts[name]
