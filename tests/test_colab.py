"""Colab: one address setting, the badges and set-up cells written from it, and the set-up cell
run the way Colab runs it (a fresh environment with torch already there, a stand-in
``google.colab``, the kit from a local clone or a wheel).

The last test builds an environment and installs the kit into it (minutes): it is marked
``colab``, out of the default run, and ``.ci/run`` runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from ctlib import DISTRIBUTION, WHEEL_GLOB
from ctlib.notebook import get_mode, results_dir
from ctlib.notebook.colab import repository
from ctlib.ops.lessonpack import export_lesson_pack
from ctlib.ops.notebooks.colab import (
    GPU_NOTEBOOKS,
    WIDGET_NOTEBOOKS,
    badge,
    colab_url,
    setup_cell,
    write_colab,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

FAKE_COLAB = {
    "google/__init__.py": "",
    "google/colab/__init__.py": "from google.colab import output  # noqa: F401\n",
    "google/colab/output.py": textwrap.dedent(
        """
        import os

        def enable_custom_widget_manager():
            open(os.environ["CTLIB_TEST_WIDGET_MARK"], "w").write("enabled")
        """
    ),
}


def _fake_colab(folder: Path) -> Path:
    """A stand-in for Colab's ``google.colab`` package: only what the set-up cell calls."""
    for rel, text in FAKE_COLAB.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _start_cell(
    python: str,
    cell: str,
    tmp: Path,
    *,
    then: str = "",
    flags: tuple[str, ...] = (),
    cwd: Path | None = None,
    environ: dict[str, str] | None = None,
    name: str = "kernel",
) -> subprocess.Popen:
    """Start a set-up cell as Colab's kernel would: ``google.colab`` imported first; the
    notebook's outputs go to ``tmp/outputs`` (quick mode, figures drawn off screen).
    ``name``: the script's, so that several kernels can run at once."""
    script = tmp / f"{name}.py"
    script.write_text(
        "import google.colab\n"
        f"exec(compile({cell!r}, 'set-up cell', 'exec'))\n"
        f"exec(compile({then!r}, 'next cell', 'exec'))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(_fake_colab(tmp / "fake")),
        "CTLIB_COLAB_HOME": str(tmp / "content"),
        "CTLIB_TEST_WIDGET_MARK": str(tmp / "widget-manager"),
        "CTLIB_OUTPUT_DIR": str(tmp / "outputs"),
        "CTLIB_QUICK": "1",
        "MPLBACKEND": "Agg",
        "PIP_QUIET": "1",
        **(environ or {}),
    }
    (tmp / "content").mkdir(exist_ok=True)
    return subprocess.Popen(
        [python, *flags, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _finish(process: subprocess.Popen, timeout: float = 1500) -> subprocess.CompletedProcess:
    """Wait for a started cell; what it printed and its exit status."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _run_cell(python: str, cell: str, tmp: Path, **options: Any) -> subprocess.CompletedProcess:
    """Run a set-up cell as Colab's kernel would (:func:`_start_cell`) and wait for it."""
    return _finish(_start_cell(python, cell, tmp, **options))


# --------------------------------------------------------------------------- the setting
def test_the_address_is_one_setting_and_everything_agrees_with_it() -> None:
    repo = repository(ROOT / "pyproject.toml")
    assert write_colab(NOTEBOOKS, repo, readme=ROOT / "README.md", check=True) == [], (
        "badges, set-up cells or README disagree with pyproject.toml: "
        "run python -m ctlib.notebook colab"
    )
    text = (ROOT / "README.md").read_text()
    assert "github.com/ctlib/ctlib" not in text, "not the kit's repository"
    for path in NOTEBOOKS:
        assert "github.com/ctlib/ctlib" not in path.read_text()


def test_with_no_address_the_kit_says_so_where_a_user_looks() -> None:
    assert colab_url("", "01_data_exploration.ipynb") is None
    line = badge("", "01_data_exploration.ipynb")
    assert "no public address yet" in line and "colab-badge" not in line
    readme = (ROOT / "README.md").read_text()
    if not repository(ROOT / "pyproject.toml"):
        assert "no public address yet" in readme


def test_a_github_address_gives_badges_and_set_up_cells(tmp_path: Path) -> None:
    import nbformat

    repo = "https://github.com/someone/ctlib"
    copies = []
    for path in NOTEBOOKS:
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        copies.append(copy)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    assert set(write_colab(copies, repo, readme=readme)) == {*copies, readme}
    for copy in copies:
        notebook = nbformat.read(copy, as_version=4)
        url = f"https://colab.research.google.com/github/someone/ctlib/blob/main/notebooks/{copy.name}"
        assert url in notebook.cells[0].source and "colab-badge.svg" in notebook.cells[0].source
        setup = next(c for c in notebook.cells if c.cell_type == "code")
        assert f"CTLIB_REPOSITORY = {repo!r}" in setup.source
        assert setup.metadata["jupyter"]["source_hidden"]
        gpu = notebook.metadata.get("accelerator") == "GPU"
        assert gpu == (copy.name in GPU_NOTEBOOKS)
        assert ("enable_custom_widget_manager" in setup.source) == (copy.name in WIDGET_NOTEBOOKS)
    assert "someone/ctlib" in readme.read_text()
    assert write_colab(copies, repo, readme=readme, check=True) == []


def test_the_set_up_cell_is_plain_python() -> None:
    for widgets in (False, True):
        source = setup_cell("https://example.org/ctlib.git", widgets=widgets)
        compile(source, "set-up cell", "exec")  # no ! or % magics: runs outside IPython too
        assert not re.search(r"^\s*[!%]", source, re.M)


# --------------------------------------------------------------------------- the cell, failing
def test_without_an_address_or_an_upload_the_cell_says_what_to_do(tmp_path: Path) -> None:
    # -S: no site-packages, so ctlib is not importable, as on a fresh Colab runtime
    done = _run_cell(sys.executable, setup_cell(""), tmp_path, flags=("-S",))
    assert done.returncode != 0
    assert "RuntimeError: The kit has no public address yet" in done.stderr
    assert "pip wheel . --no-deps" in done.stderr and WHEEL_GLOB in done.stderr


def test_a_bad_address_is_a_message_not_a_bare_git_error(tmp_path: Path) -> None:
    missing = (tmp_path / "no-such-repo.git").as_uri()
    done = _run_cell(sys.executable, setup_cell(missing), tmp_path, flags=("-S",))
    assert done.returncode != 0
    assert f"Could not clone the kit from {missing}" in done.stderr
    assert "or upload the kit: a wheel" in done.stderr


def test_a_runtime_that_loaded_ipywidgets_7_is_restarted_once_saying_so(tmp_path: Path) -> None:
    # Colab preinstalls ipywidgets 7; the kit brings 8. If 7 was imported before the set-up
    # cell ran, the cell says so and restarts the runtime (Colab's way: the kernel exits).
    fake7 = tmp_path / "fake" / "ipywidgets"
    fake7.mkdir(parents=True)
    (fake7 / "__init__.py").write_text('__version__ = "7.7.1"\n')
    cell = "import ipywidgets\n" + setup_cell("", widgets=True)  # ctlib importable here
    done = _run_cell(sys.executable, cell, tmp_path)
    assert done.returncode == -9, (done.returncode, done.stderr[-2000:])
    assert "Colab had loaded ipywidgets 7; the kit needs 8. Restarting the runtime" in done.stdout
    assert not (tmp_path / "widget-manager").exists()


def test_the_cell_does_nothing_off_colab() -> None:
    namespace: dict[str, object] = {}
    exec(compile(setup_cell(""), "set-up cell", "exec"), namespace)  # noqa: S102
    assert namespace["CTLIB_REPOSITORY"] == ""


# --------------------------------------------------------------------------- the cell, for real
def _torch_closure() -> list[metadata.Distribution]:
    """torch, torchvision and everything they need, as installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, metadata.Distribution] = {}
    todo = ["torch", "torchvision"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def _preinstalled_torch(folder: Path) -> None:
    """A folder holding this machine's torch (and what it needs), as Colab's dist-packages
    holds Colab's: linked, not copied, so the test costs no gigabytes."""
    folder.mkdir()
    for dist in _torch_closure():
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"bin", "__pycache__"}:
            if (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)


@pytest.mark.colab
def test_the_set_up_cell_installs_the_kit_beside_colabs_torch(tmp_path: Path) -> None:
    venv = tmp_path / "colab-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _preinstalled_torch(tmp_path / "dist-packages")
    Path(site, "colab-torch.pth").write_text(str(tmp_path / "dist-packages") + "\n")
    probe = "import json, torch; print(json.dumps([torch.__version__, torch.__file__]))"
    before = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)

    bare = tmp_path / "ctlib.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(bare)], check=True)
    imports = next(
        c["source"]
        for c in json.loads((ROOT / "notebooks" / "01_data_exploration.ipynb").read_text())["cells"]
        if c["cell_type"] == "code" and "from ctlib" in "".join(c["source"])
    )
    then = "".join(imports) + (
        "\nimport ctlib, json, torch\n"
        "print('RESULT', json.dumps([torch.__version__, torch.__file__, ctlib.__file__]))\n"
    )
    cell = setup_cell(bare.as_uri(), widgets=True)
    done = _run_cell(python, cell, tmp_path, then=then)
    assert done.returncode == 0, done.stderr[-3000:]
    version, torch_file, ctlib_file = json.loads(done.stdout.split("RESULT", 1)[1])
    assert [version, torch_file] == json.loads(before.stdout), "Colab's torch left as it was"
    assert str(tmp_path / "dist-packages") in torch_file
    assert not list(Path(site).glob("torch-*.dist-info")), "torch was not installed again"
    assert ctlib_file.startswith(str(tmp_path / "content" / "ctlib"))
    assert (tmp_path / "widget-manager").read_text() == "enabled"

    # a room that blocks GitHub: no git, a wheel uploaded to /content
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", DISTRIBUTION], check=True)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
    )
    (wheel,) = wheels.glob(WHEEL_GLOB)
    content = tmp_path / "content"
    subprocess.run(["rm", "-rf", str(content / "ctlib")], check=True)
    wheel.rename(content / wheel.name)
    looked_up = "from ctlib.notebook import glossary\nassert 'ROC-AUC' in glossary('ROC-AUC')\n"
    done = _run_cell(python, setup_cell(""), tmp_path, then=looked_up + then)
    assert done.returncode == 0, done.stderr[-3000:]  # the wheel carries the glossary too
    _, torch_after, ctlib_file = json.loads(done.stdout.split("RESULT", 1)[1])
    assert torch_after == torch_file and "site-packages" in ctlib_file

    # what the wheel carries is enough for the lessons that read the committed results and
    # figures: run them end to end in quick mode from this environment, outside the
    # repository, without the data sets (lesson 01 then shows the committed real-CT figures)
    no_data = {"CTLIB_DATA_DIR": str(tmp_path / "no-data")}
    (tmp_path / "no-data").mkdir()
    # the networks as a room gets them: packed where they were trained (the slow tests'
    # pre-flight and notebooks: the lessons' runs and the solutions' own), imported on the
    # learner's side; without them here, the lessons train
    pack, quick = tmp_path / "lessons.zip", get_mode("quick")
    trained = sorted({m.parents[2] for m in results_dir(quick).rglob("fold*/metrics.json")})
    try:
        export_lesson_pack(pack, quick, folders=trained or None)
    except FileNotFoundError:
        pack = None
    if pack is not None:
        load = "from ctlib.ops.lessonpack import import_lesson_pack\n"
        load += f"import_lesson_pack({str(pack)!r})\n"
        done = _run_cell(python, setup_cell(""), tmp_path, then=load, cwd=tmp_path, environ=no_data)
        assert done.returncode == 0, done.stderr[-3000:]
    started = {}
    for name in LESSONS_FROM_THE_WHEEL:  # at once: they read what the pack brought
        notebook = json.loads((ROOT / "notebooks" / name).read_text())
        code = [
            "".join(c["source"])
            for c in notebook["cells"]
            if c["cell_type"] == "code" and not "".join(c["source"]).startswith("#@title Set-up")
        ]
        lesson = "\n\n".join(code) + "\nprint('LESSON DONE')\n"
        started[name] = _start_cell(
            python,
            setup_cell(""),
            tmp_path,
            then=lesson,
            cwd=tmp_path,
            environ=no_data,
            name=Path(name).stem,
        )
    for name, process in started.items():
        done = _finish(process)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        assert "LESSON DONE" in done.stdout, name
        assert "not in this copy" not in done.stdout and "no committed results" not in done.stdout
        assert "_committed/figures:" not in done.stdout, "a committed figure the wheel lacks"
        if name.startswith("01_"):
            assert done.stdout.count("committed figure, real data") >= 6, done.stdout[-2000:]


#: the lessons that read the committed results and figures, run from an installed wheel
LESSONS_FROM_THE_WHEEL = (
    "01_data_exploration.ipynb",
    "03_cross_validation.ipynb",
    "04_tsne.ipynb",
    "05_gradcam.ipynb",
    "06_honest_evaluation.ipynb",
)
