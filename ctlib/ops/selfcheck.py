"""Before the day (``python -m ctlib check``): is this machine ready for the workshop?

One line per requirement, ``✓`` or ``✗``, and for each ``✗`` the command that fixes it:
Python and torch, the kit and every package it declares, JupyterLab with the widget extension
and a kernel on this Python, the committed results the lessons read, the real data sets
(optional: the lessons fall back to synthetic slices and the committed results), the networks
the lessons would otherwise train in class, and free disk. ``docs/LEARNERS.md`` is the page
learners follow; its pre-workshop message asks them to run this.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from ctlib import DISTRIBUTION
from ctlib.data import REAL_DATASETS, DataError
from ctlib.data.verify import verify_dataset
from ctlib.notebook.folders import committed_root, results_dir
from ctlib.notebook.lessons import lesson_runs
from ctlib.notebook.mode import get_mode
from ctlib.paths import cache_dir

__all__ = ["Check", "run_checks", "format_checks"]

#: words of the kit's own summary (pyproject.toml's description): they tell this kit, installed
#: under its former distribution name ``ctlib``, from the unrelated PyPI package of that name
_SUMMARY = "Explainable COVID-19 Detection Using Chest CT Scans"
#: disk the lessons write (synthetic set, canvases, networks, outputs), in GiB
DISK_GIB = 2.0


@dataclass(frozen=True)
class Check:
    """One requirement: whether it is met, what was found, and the fix when it is not.
    ``required=False``: the lessons run without it (a ✗ is a note, not a failure)."""

    name: str
    ok: bool
    found: str
    fix: str = ""
    required: bool = True


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check(
        "Python 3.10 or later",
        sys.version_info >= (3, 10),
        f"Python {version} ({sys.executable})",
        "install Python 3.11 (python.org, or `conda create -n ctlib python=3.11`) and the kit "
        "into it",
    )


def _kit() -> tuple[metadata.Distribution | None, Check]:
    """The kit's installed distribution (``ctlib-covid``, :data:`ctlib.DISTRIBUTION`) and its
    check line. An install made before the rename (distribution ``ctlib``, this kit's own
    summary) still passes, saying so; the unrelated PyPI package ``ctlib`` does not."""
    name = "the kit (ctlib)"
    fix = 'pip install -e ".[notebooks]" in the kit\'s folder (or pip install its wheel)'
    try:
        kit = metadata.distribution(DISTRIBUTION)
        return kit, Check(name, True, f"{DISTRIBUTION} {kit.version}")
    except metadata.PackageNotFoundError:
        pass
    for other in metadata.packages_distributions().get("ctlib", []):
        try:
            dist = metadata.distribution(other)
        except metadata.PackageNotFoundError:
            continue
        if _SUMMARY in (dist.metadata["Summary"] or ""):
            return dist, Check(name, True, f"{other} {dist.version} (the kit under its former "
                                           f"name; {fix} renames it {DISTRIBUTION})")  # fmt: skip
        return None, Check(
            name, False,
            f"the import name ctlib belongs to {other} {dist.version}, an unrelated package",
            f"pip uninstall {other}, then {fix}",
        )  # fmt: skip
    return None, Check(name, False, "not installed", fix)


def _declared() -> list[Check]:
    """The kit itself, torch, and every package the kit declares, at a version it accepts."""
    kit, found = _kit()
    if kit is None:
        return [found]
    checks = [found]
    for line in kit.requires or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            checks.append(Check(str(requirement), False, "not installed",
                                f'pip install "{requirement}"'))  # fmt: skip
            continue
        ok = requirement.specifier.contains(version, prereleases=True)
        checks.append(Check(str(requirement), ok, f"{requirement.name} {version}",
                            "" if ok else f'pip install "{requirement}"'))  # fmt: skip
    return checks


def _jupyter() -> list[Check]:
    """JupyterLab 4, the widget extension, and a kernel that runs this Python."""
    checks = []
    for name, spec, what in (
        ("jupyterlab", ">=4", "JupyterLab"),
        ("jupyterlab_widgets", ">=3", "the widget extension (jupyterlab_widgets)"),
        ("ipykernel", ">=6", "ipykernel"),
    ):
        try:
            version = metadata.version(name)
            ok = SpecifierSet(spec).contains(version)
            found = f"{name} {version}"
        except metadata.PackageNotFoundError:
            ok, found = False, "not installed"
        checks.append(Check(f"{what} {spec}", ok, found,
                            "" if ok else 'pip install -e ".[notebooks]" (or pip install '
                            f'"{name}{spec}")'))  # fmt: skip
    checks.append(_kernel())
    return checks


def _kernel() -> Check:
    """A Jupyter kernel whose Python is this one (else JupyterLab would run another)."""
    fix = f'{sys.executable} -m ipykernel install --user --name ctlib --display-name "ctlib"'
    try:
        # lazy: in the notebooks extra; its absence is what this check reports
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        return Check("a Jupyter kernel on this Python", False, "jupyter_client missing", fix)
    here = Path(sys.executable).resolve()
    names = []
    for name, spec in KernelSpecManager().get_all_specs().items():
        argv = spec.get("spec", {}).get("argv") or []
        command = Path(argv[0]) if argv else None
        if command is not None and command.name.startswith("python"):
            resolved = shutil.which(str(command)) if not command.is_absolute() else str(command)
            if command.is_absolute() and Path(resolved).resolve() == here:
                names.append(name)
            elif not command.is_absolute() and Path(spec["resource_dir"]).is_relative_to(
                Path(sys.prefix)
            ):
                names.append(name)  # the environment's own "python3" kernel
    return Check("a Jupyter kernel on this Python", bool(names),
                 f"kernel {', '.join(names)}" if names else f"none runs {here}", fix)  # fmt: skip


def _committed() -> Check:
    root = committed_root()
    return Check(
        "the committed results the lessons read",
        root is not None,
        str(root / "results") if root else "neither a clone nor a wheel that carries them",
        "install the kit from its folder or a wheel built from it (pip wheel . --no-deps)",
    )


def _data() -> list[Check]:
    checks = []
    for name in REAL_DATASETS:
        try:  # against the shipped manifest (remembered once it passed: seconds)
            report = verify_dataset(name, progress=False)
            found = f"{report.expected} images, verified against the manifest"
            ok = True
        except DataError as error:
            ok, found = False, str(error).split("\n")[0].split(". ")[0]
        checks.append(Check(f"data set {name} (optional: else synthetic slices)", ok, found,
                            f"python -m ctlib download {name}", required=False))  # fmt: skip
    return checks


def _networks() -> Check:
    """The networks notebooks 02-05 train in quick mode, trained already (else in class)."""
    mode = get_mode()
    missing = []
    for run, dataset, config in lesson_runs(mode):
        folder = results_dir(mode, config)
        if not list(folder.glob(f"{dataset}/{run.protocol_in(mode)}/*/fold*/metrics.json")):
            missing.append(f"{run.notebook} ({config.arch} on {dataset})")
    return Check(
        "the lessons' networks, trained before the day (optional)",
        not missing,
        "all trained" if not missing else "not yet: " + "; ".join(missing),
        "python -m ctlib lesson-pack import FILE with the pack your teacher sends, or train them "
        "here: python -m ctlib prepare-workshop --no-rehearse (else each trains in class)",
        required=False,
    )


def _disk() -> Check:
    folder = cache_dir()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free / 2**30
    return Check(
        f"{DISK_GIB:g} GiB free for the lessons' files",
        free >= DISK_GIB,
        f"{free:.1f} GiB free at {folder}",
        "free some disk, or point CTLIB_CACHE_DIR and CTLIB_OUTPUT_DIR elsewhere",
    )


#: every check, in the order a learner fixes them
CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    _python, _declared, _jupyter, _committed, _data, _networks, _disk,
)  # fmt: skip


def run_checks(checks: tuple[Callable[[], Check | list[Check]], ...] = CHECKS) -> list[Check]:
    """Run each check; one that raises becomes a ✗ naming the error."""
    found: list[Check] = []
    for check in checks:
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 - a broken check is itself a finding
            result = Check(check.__name__.strip("_"), False, f"{type(error).__name__}: {error}",
                           "report this with the line above")  # fmt: skip
        found += result if isinstance(result, list) else [result]
    return found


def format_checks(checks: list[Check]) -> tuple[str, bool]:
    """The report, one line per check (and its fix under each ✗), and whether every required
    check passed."""
    lines = []
    for check in checks:
        mark = "✓" if check.ok else ("✗" if check.required else "–")
        lines.append(f"{mark} {check.name}: {check.found}")
        if not check.ok and check.fix:
            lines.append(f"    fix: {check.fix}")
    ready = all(c.ok for c in checks if c.required)
    lines.append(
        "ready for the workshop" if ready else "NOT ready: fix each ✗ above, then run this again"
    )
    return "\n".join(lines), ready
