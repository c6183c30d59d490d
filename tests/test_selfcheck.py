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
