"""``python -m ctlib check``: a learner's machine, line by line, with the fix for what is
missing; each check made to fail once, on purpose."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from ctlib.cli import main
from ctlib.ops import selfcheck
from ctlib.ops.selfcheck import Check, format_checks, run_checks


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("CTLIB_DATA_DIR", str(empty))
    return empty


def test_this_environment_is_ready_and_every_line_names_what_it_found(no_data: Path) -> None:
    checks = run_checks()
    names = [c.name for c in checks]
    assert names[0] == "Python 3.10 or later" and "the kit (ctlib)" in names
    assert any(n.startswith("torch>=") for n in names) and any("JupyterLab" in n for n in names)
    report, ready = format_checks(checks)
    assert ready and report.endswith("ready for the workshop")
    # the real data sets are optional: missing, they are a note with the download command
    data = [c for c in checks if c.name.startswith("data set")]
    assert len(data) == 2 and not any(c.ok or c.required for c in data)
    assert (
        "– data set covid19-ct" in report and "fix: python -m ctlib download covid19-ct" in report
    )


def test_a_missing_or_old_package_is_a_cross_with_the_command_that_fixes_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, no_data: Path
) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name == "seaborn":
            raise metadata.PackageNotFoundError(name)
        return "1.0" if name == "numpy" else real(name)

    monkeypatch.setattr(selfcheck.metadata, "version", version)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert '✗ seaborn>=0.13: not installed\n    fix: pip install "seaborn>=0.13"' in out
    assert '✗ numpy>=1.24: numpy 1.0\n    fix: pip install "numpy>=1.24"' in out
    assert out.rstrip().endswith("NOT ready: fix each ✗ above, then run this again")


def test_a_kernel_on_another_python_is_not_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client import kernelspec

    elsewhere = {"spec": {"argv": ["/opt/other/bin/python", "-m", "ipykernel_launcher"]},
                 "resource_dir": "/opt/other/share/jupyter/kernels/python3"}  # fmt: skip
    monkeypatch.setattr(kernelspec.KernelSpecManager, "get_all_specs",
                        lambda self: {"python3": elsewhere})  # fmt: skip
    check = selfcheck._kernel()
    assert not check.ok and "ipykernel install --user --name ctlib" in check.fix


def test_a_check_that_breaks_is_itself_a_finding() -> None:
    def _broken() -> Check:
        raise OSError("disk on fire")

    (check,) = run_checks((_broken,))
    assert not check.ok and check.found == "OSError: disk on fire" and check.required
    assert format_checks([check])[1] is False


def test_the_learners_page_is_linked_and_its_commands_exist() -> None:
    import re
    import shlex

    from ctlib.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "LEARNERS.md").read_text()
    for where in ("README.md", "docs/INSTRUCTOR.md"):
        assert "docs/LEARNERS.md" in (root / where).read_text(), where
    commands = [
        c.split("#")[0].strip() for c in re.findall(r"python -m ctlib ([a-z][^`\n]*)", page)
    ]
    assert {"check", "download covid19-ct", "download sars-cov-2-ct"} <= set(commands)
    parser = build_parser()
    for command in commands:
        words = [w if w != "NAME" else "covid19-ct" for w in shlex.split(command)]
        parser.parse_args(words)  # exits (fails the test) on an unknown command
    for path in re.findall(r"`((?:scripts|docs)/[\w./-]+|environment\.yml)`", page):
        assert (root / path).exists(), path


# --------------------------------------------------------------------------- the kit's own name
ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _dist_info(folder: Path, name: str, summary: str) -> Path:
    """A minimal installed distribution ``name`` (its dist-info) in ``folder``."""
    info = folder / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\nSummary: {summary}\n"
    )
    (info / "top_level.txt").write_text("ctlib\n")
    return info


def test_the_distribution_is_not_the_unrelated_pypi_ctlib_and_the_code_agrees() -> None:
    from ctlib import DISTRIBUTION, WHEEL_GLOB

    name = _project()["name"]
    assert name.lower() != "ctlib", "the PyPI name ctlib belongs to an unrelated package"
    assert name == DISTRIBUTION
    assert WHEEL_GLOB == "ctlib_covid-*.whl"  # how pip names the wheel of ctlib-covid
    assert Path("ctlib_covid-0.1.0-py3-none-any.whl").match(WHEEL_GLOB)


def test_the_kit_is_found_by_its_metadata_under_the_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project()
    _dist_info(tmp_path, project["name"], project["description"])
    monkeypatch.syspath_prepend(str(tmp_path))
    kit, check = selfcheck._kit()
    assert kit is not None and kit.metadata["Name"] == "ctlib-covid"
    assert check.ok and check.found == "ctlib-covid 0.1.0"


def test_an_install_under_the_former_name_passes_and_the_unrelated_ctlib_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = metadata.distribution

    def only_old(name: str) -> metadata.Distribution:
        if name == "ctlib-covid":  # nothing installed under the new name
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(selfcheck.metadata, "distribution", only_old)
    monkeypatch.setattr(selfcheck.metadata, "packages_distributions", lambda: {"ctlib": ["ctlib"]})
    ours = tmp_path / "ours"
    _dist_info(ours, "ctlib", _project()["description"])
    monkeypatch.syspath_prepend(str(ours))
    kit, check = selfcheck._kit()
    assert kit is not None and check.ok and "former name" in check.found

    theirs = tmp_path / "theirs"
    _dist_info(theirs, "ctlib", "Some other library that happens to be called ctlib")
    monkeypatch.syspath_prepend(str(theirs))
    kit, check = selfcheck._kit()
    assert kit is None and not check.ok and "unrelated package" in check.found
    assert check.fix.startswith("pip uninstall ctlib, then pip install -e")
