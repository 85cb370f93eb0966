"""Which of the submitter's environment variables a job gets, and which never leave the submitter.

A job's environment is written into its record (SQLite, or DynamoDB where every user and worker role can
read it until it expires) and handed to the job process. So credentials are never taken from the submitter,
whatever asked for them (``-V``, ``-v NAME``, ``#SBATCH``'s default export, ``--export=ALL``):

* ``DENY_PATTERNS`` below (case-insensitive shell-style globs): AWS credentials and settings (``AWS_*``,
  which would also override the job's own role), and anything named like a token, secret, password,
  credential or key; an agent socket. A host extends the list with ``env_deny: [PATTERN, ...]`` in
  ``hosts.yaml``. A job that needs a secret gets it from its definition (``--secret NAME=ARN``), resolved
  where it runs and never stored in a job record.
* On an ``aws`` host, exporting the whole environment is opt-in: ``-V`` (or ``#PBS -V``,
  ``#SBATCH --export=ALL``, ``#BSUB -env all``) exports, and ``qsub`` names what it exported; Slurm's
  implicit default (any ``#SBATCH`` line) does not, there. A local host keeps Slurm's default.

``qsub`` prints one note line naming what it dropped.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from hyper.config import Host
from hyper.parsing.directives import Directives

# captured from the submitter whatever -V says: what a job needs to find programs and its home
SUBMIT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ")
DENY_PATTERNS = ("AWS_*", "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*", "*_KEY", "*_KEY_*",
                 "KEY", "KEY_*", "*APIKEY*", "*PRIVATE_KEY*", "SSH_AUTH_SOCK", "KRB5CCNAME")


@dataclass
class EnvironmentPlan:
    """A job's environment from the submitter's, and what was left out or exported as a whole."""

    env: dict[str, str]
    dropped: list[str] = field(default_factory=list)  # names that matched the deny list
    exported: list[str] = field(default_factory=list)  # names -V exported beyond the usual ones
    default_export_off: bool = False  # an #SBATCH script on an aws host: Slurm's export-all not applied

    def notes(self) -> list[str]:
        out = []
        if self.dropped:
            out.append(f"not passed to the job (credentials never leave the submitter): {', '.join(self.dropped)}")
        if self.default_export_off:
            out.append("#SBATCH: the whole environment is not exported on an aws host; pass -V to export it")
        if self.exported:
            out.append(f"-V exported: {', '.join(self.exported)}")
        return out


def deny_patterns(host: Host) -> tuple[str, ...]:
    """The built-in deny list plus the host's ``env_deny`` (a list or comma-separated text)."""
    extra = (host.extra or {}).get("env_deny") or []
    if isinstance(extra, str):
        extra = extra.split(",")
    return DENY_PATTERNS + tuple(str(p).strip() for p in extra if str(p).strip())


def denied(name: str, patterns: tuple[str, ...]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p.upper()) for p in patterns)


def plan_environment(host: Host, d: Directives, submit_env: dict[str, str]) -> EnvironmentPlan:
    """What the job gets: the usual variables, -v ones, and with export-all everything, minus the deny list."""
    patterns = deny_patterns(host)
    dropped: set[str] = set()

    def keep(name: str) -> bool:
        if denied(name, patterns):
            dropped.add(name)
            return False
        return True

    env = {k: submit_env[k] for k in SUBMIT_ENV if k in submit_env and keep(k)}
    default_off = bool(d.export_all and d.export_default and host.type == "aws")
    exported = []
    if d.export_all and not default_off:
        for key, value in submit_env.items():
            if keep(key) and key not in env:
                env[key] = value
                exported.append(key)
    for key, given in d.env.items():
        if keep(key):
            env[key] = submit_env.get(key, "") if given is None else given
    for key in SUBMIT_ENV:
        if key in submit_env and keep(f"PBS_O_{key}"):
            env.setdefault(f"PBS_O_{key}", submit_env[key])
    env["PBS_O_HOST"] = os.uname().nodename
    return EnvironmentPlan(env, sorted(dropped), sorted(exported) if host.type == "aws" else [], default_off)
