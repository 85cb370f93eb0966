"""Slurm and LSF commands for tools that drive them (dask-jobqueue, Parsl, Snakemake), installed on request.

`sbatch`, `squeue`, `bsub`... are not console scripts of the package: on a machine that has a real Slurm or
LSF they would shadow it. `hyper shims install DIR` writes small launchers into a directory the user puts
on PATH for hyper's jobs only; it refuses to shadow a real command found on PATH (unless forced) and to
overwrite a file it did not write. Everything is checked before the first file is written.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from hyper.errors import HyperError, UsageError

MARKER = "# hyper shim"
SHIMS: dict[str, dict[str, str]] = {
    "slurm": {"sbatch": "qcmds.slurm.sbatch", "squeue": "qcmds.slurm.squeue", "scancel": "qcmds.slurm.scancel",
              "sacct": "qcmds.slurm.sacct"},
    "lsf": {"bsub": "qcmds.lsf.bsub", "bjobs": "qcmds.lsf.bjobs", "bkill": "qcmds.lsf.bkill",
            "bpeek": "qcmds.lsf.bpeek"},
}


@dataclass
class ShimResult:
    name: str
    family: str
    path: str
    action: str  # written | replaced | removed


def launcher(module: str, python: str) -> str:
    """The text of one launcher: the installed interpreter running the front-end's main()."""
    return (f"#!{python}\n{MARKER}: {module} (written by `hyper shims install`; delete it to uninstall)\n"
            f"import sys\nfrom {module} import main\nsys.exit(main())\n")


def is_shim(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return MARKER in fh.read(4096)
    except OSError:
        return False


def _families(names: list[str] | None) -> list[str]:
    chosen = names or ["all"]
    for name in chosen:
        if name not in (*SHIMS, "all"):
            raise UsageError(f"unknown shim family {name!r}", f"use {', '.join(SHIMS)} or all")
    return list(SHIMS) if "all" in chosen else list(dict.fromkeys(chosen))


def _real_command(name: str, directory: Path) -> str | None:
    """A command of that name elsewhere on PATH that hyper did not write (a real Slurm or LSF)."""
    others = [p for p in os.environ.get("PATH", "").split(os.pathsep)
              if p and Path(p).resolve() != directory.resolve()]
    found = shutil.which(name, path=os.pathsep.join(others))
    return found if found and not is_shim(Path(found)) else None


def install(directory: str, families: list[str] | None = None, *, force: bool = False,
            python: str | None = None) -> list[ShimResult]:
    """Write the launchers of `families` (slurm, lsf; default both) into `directory`."""
    target = Path(directory).expanduser()
    chosen = _families(families)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is not a directory", "give a directory to hold the commands")
    plan = [(family, name, module) for family in chosen for name, module in SHIMS[family].items()]
    for family, name, _ in plan:
        path = target / name
        if path.exists() and not is_shim(path) and not force:
            raise HyperError(f"{path} exists and was not written by hyper",
                             "remove it, pick another directory, or pass --force to replace it")
        real = _real_command(name, target)
        if real and not force:
            raise HyperError(f"a real {name} is on PATH ({real}); hyper's {family} commands would shadow it",
                             "keep them in a directory you add to PATH only for hyper, and pass --force")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HyperError(f"cannot create {target}: {exc.strerror}", "pick a directory you can write") from None
    results = []
    for family, name, module in plan:
        path = target / name
        action = "replaced" if path.exists() else "written"
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(launcher(module, python or sys.executable))
        tmp.chmod(0o755)
        os.replace(tmp, path)  # a tool running the old launcher meanwhile never sees half a file
        results.append(ShimResult(name, family, str(path), action))
    return results


def remove(directory: str, families: list[str] | None = None) -> list[ShimResult]:
    """Delete the launchers hyper wrote in `directory` (never a file it did not write)."""
    target = Path(directory).expanduser()
    results = []
    for family in _families(families):
        for name in SHIMS[family]:
            path = target / name
            if path.exists() and is_shim(path):
                path.unlink()
                results.append(ShimResult(name, family, str(path), "removed"))
    return results
