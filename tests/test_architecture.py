"""The house's rules, checked on the source: data flows one way, nothing imports in a circle.

Every module of ``ctlib`` belongs to a layer (``LAYERS``, lowest first; ``ARCHITECTURE.md``
draws the same map). A module may import modules of its own layer or of lower ones, never a
higher one; no chain of imports may lead back to where it started; a package's own modules
never import the package's ``__init__`` (they import each other directly); imports inside
functions are only the command line's (each command loads what it needs) or carry a
``# lazy:`` reason. The checks read the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ctlib"

#: Lowest first. A module is matched by its exact name or, for a package, by its prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # ctlib.plots.palette: the colour language, data only (ctlib.study's tables use it too)
    (
        "foundation",
        (
            "ctlib",
            "ctlib.paths",
            "ctlib.errors",
            "ctlib.files",
            "ctlib.argtypes",
            "ctlib.plots.palette",
        ),
    ),
    ("data", ("ctlib.data", "ctlib.runfiles")),
    ("pure", ("ctlib.canvas", "ctlib.metrics", "ctlib.optim")),
    ("transforms", ("ctlib.transforms", "ctlib.batches")),
    ("models", ("ctlib.models",)),
    ("recipe", ("ctlib.config", "ctlib.recipes")),
    ("machinery", ("ctlib.runtime", "ctlib.handlers")),
    ("train", ("ctlib.train",)),
    ("cross-validation", ("ctlib.cv",)),
    ("results", ("ctlib.results",)),
    ("explain, sweep", ("ctlib.explain", "ctlib.ops")),
    ("study", ("ctlib.study",)),
    ("plots", ("ctlib.plots",)),
    ("notebook helpers, widgets", ("ctlib.notebook", "ctlib.widgets")),
    (
        "notebook tools, workshop",
        (
            "ctlib.ops.notebooks",
            "ctlib.ops.workshop",
            "ctlib.ops.lessonpack",
            "ctlib.ops.selfcheck",
        ),
    ),
    ("command line", ("ctlib.cli", "ctlib.options", "ctlib.__main__", "ctlib.notebook.__main__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    if index is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and ARCHITECTURE.md")
    return index


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> list[tuple[str, int, bool, str]]:
    """``(imported module, line, inside a function?, source)`` for every import; the source is
    the statement's lines and the line above it (where a ``# lazy:`` reason may stand).

    ``from ctlib.x import y`` counts as importing ``ctlib.x`` and, where ``y`` is a module,
    ``ctlib.x.y`` too. Imports under ``if TYPE_CHECKING:`` are not run and are left out.
    """
    text = path.read_text()
    lines = text.splitlines()
    found: list[tuple[str, int, bool, str]] = []

    def source(node: ast.stmt) -> str:
        return "\n".join(lines[max(node.lineno - 2, 0) : node.end_lineno])

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((alias.name, child.lineno, in_function, source(child)))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, child.lineno, in_function, source(child)))
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    if sub in MODULES:
                        found.append((sub, child.lineno, in_function, source(child)))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            else:
                visit(child, in_function)

    visit(ast.parse(text), False)
    return found


def ctlib_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, *_ in imports_of(path):
            if target in MODULES and target != module:
                edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_every_module_has_a_layer_and_a_place_on_the_map() -> None:
    house_map = (ROOT / "ARCHITECTURE.md").read_text()
    for module in MODULES:
        layer_of(module)
        if module != "ctlib" and not module.endswith("__main__"):
            assert f"`{module}`" in house_map or f"`{module.rsplit('.', 1)[-1]}`" in house_map, (
                f"{module} is missing from ARCHITECTURE.md"
            )


def test_no_import_circle_inside_ctlib() -> None:
    assert cycles(ctlib_edges()) == []


def test_cycle_detection_finds_a_planted_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_no_lower_layer_imports_a_higher_one() -> None:
    wrong = []
    for module, path in MODULES.items():
        for target, line, _, _ in imports_of(path):
            if target in MODULES and layer_of(target) > layer_of(module):
                wrong.append(
                    f"{path.relative_to(ROOT)}:{line} ({LAYERS[layer_of(module)][0]}) "
                    f"imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert wrong == []


def test_a_package_never_imports_its_own_init() -> None:
    wrong = []
    for module, path in MODULES.items():
        package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else None
        if package in (None, "ctlib"):
            continue
        for target, line, _, source in imports_of(path):
            if target == package:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {source.splitlines()[-1].strip()}")
    assert wrong == []


def test_imports_inside_functions_have_a_reason() -> None:
    unexplained = []
    for module, path in MODULES.items():
        for target, line, in_function, source in imports_of(path):
            if not in_function:
                continue
            if module == "ctlib.cli" and target.startswith("ctlib"):
                continue  # each command imports what it needs (see its module docstring)
            if "# lazy:" not in source:
                unexplained.append(f"{path.relative_to(ROOT)}:{line}: {source.strip()}")
    assert unexplained == []


def test_private_names_stay_in_their_module() -> None:
    crossing = []
    for _, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ctlib"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        crossing.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} imports "
                            f"{node.module}.{alias.name}"
                        )
    assert crossing == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ctlib.data import read_grayscale\n", {"ctlib.data"}),
        ("from ctlib.data import synthetic\n", {"ctlib.data", "ctlib.data.synthetic"}),
        ("def f():\n    import ctlib.models\n", {"ctlib.models"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ctlib.plots import x\n",
            {"typing"},
        ),
    ],
)
def test_imports_are_read_as_python_runs_them(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert {target for target, *_ in imports_of(path)} == expected


def _declared_distributions() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    names = set()
    for spec in specs:
        name = spec.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def test_every_third_party_import_is_declared_in_pyproject() -> None:
    import sys
    from importlib.metadata import packages_distributions

    provided = packages_distributions()
    declared = _declared_distributions()
    only_on_colab = {"google"}  # google.colab exists only inside Colab
    missing = []
    for path in MODULES.values():
        for target, line, _, _ in imports_of(path):
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top == "ctlib" or top in only_on_colab:
                continue
            dists = {d.lower().replace("_", "-") for d in provided.get(top, [top])}
            if not dists & declared:
                missing.append(
                    f"{path.relative_to(ROOT)}:{line} imports {top} (distribution {sorted(dists)})"
                )
    assert missing == []


@pytest.mark.slow
def test_a_wheel_carries_every_module_and_the_package_data(tmp_path: Path) -> None:
    """A non-editable install (a wheel, as on Colab without git) finds the manifests, the
    pseudo-patient groups and the step costs: they are package data, not repository files."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == "ctlib_covid-0.1.0-py3-none-any.whl"  # the distribution ctlib-covid
    names = set(zipfile.ZipFile(wheel).namelist())
    for module, path in MODULES.items():
        assert path.relative_to(ROOT).as_posix() in names, module
    for data in (
        "ctlib/data/manifests/covid19-ct.csv",
        "ctlib/data/manifests/sars-cov-2-ct.csv",
        "ctlib/data/manifests/sars-cov-2-ct.pseudo_patients.csv",
        "ctlib/step_costs.csv",
    ):
        assert data in names
    # what the lessons read from the repository travels too: every committed result and figure
    for folder in ("results", "figures"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                assert f"ctlib/_committed/{path.relative_to(ROOT).as_posix()}" in names, path
    # installed from the wheel, outside any clone, the lessons find them there
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    probe = (
        "from ctlib.notebook import committed_figures, committed_results, committed_table\n"
        "import ctlib, pathlib\n"
        "results = committed_results()\n"
        f"assert not str(results).startswith({str(ROOT)!r}), results\n"
        "assert (results / 'covid19-ct' / 'paper').is_dir()\n"
        "assert committed_figures('reliability.png')[0].is_file()\n"
        "assert committed_table('explain/road_*.csv') is not None\n"
        "from ctlib.ops.selfcheck import _kit\n"  # the kit's metadata, under its new name
        "kit, check = _kit()\n"
        "assert check.ok and check.found == 'ctlib-covid 0.1.0', check\n"
        f"assert str(kit.locate_file('')) == {str(target)!r}, kit.locate_file('')\n"
        "print(results)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target / "ctlib" / "_committed" / "results")
