"""Every training command line the kit's documents give keeps its meaning.

The commands are collected from README.md, docs/, the notebooks' text and scripts/ (the scripts'
own ``--list`` output, where their variables are filled in). ``fixtures/command_lines.json``
holds the configuration each gave *before* the recipe and the runtime were split (written by
``python tests/test_command_lines.py --write`` with that version of the kit on the path; a line
documented later is added with ``--add``, the same way); each must give the same recipe and
runtime now.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "command_lines.json"
COMMAND = re.compile(r"(?:python -m ctlib|^ctlib|[`\s]ctlib) (train|cv) ([^`\n\"|;)#]*)", re.M)
PLACEHOLDERS = ("$", "<", "...", "…", "{", "*")


def _texts() -> list[str]:
    texts = [(ROOT / "README.md").read_text()]
    texts += [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    texts += [p.read_text() for p in sorted((ROOT / "scripts").glob("*.sh"))]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        texts += ["".join(cell["source"]) for cell in cells]
    env = {**os.environ, "CTLIB_DATA_DIR": "/data"}
    for script in ("reproduce_cpu.sh", "learning_curve.sh"):
        listed = subprocess.run(
            ["bash", str(ROOT / "scripts" / script), "--list"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        texts.append(listed.stdout)
    return texts


def collect_commands() -> list[str]:
    """``train``/``cv`` command lines in the kit's documents (placeholders left out), sorted."""
    found = set()
    for text in _texts():
        text = text.replace("\\\n", " ")
        for verb, rest in COMMAND.findall(text):
            line = f"{verb} {rest}".strip()
            words = shlex.split(line) if not any(mark in line for mark in PLACEHOLDERS) else []
            if words and "--help" not in words and "-h" not in words:
                found.add(" ".join(words))
    return sorted(found)


#: options added after the split, which change no recipe or runtime setting: a command line with
#: them is compared with the same line without them (``--protocol external`` read as ``paper``)
NEW_OPTIONS = {"--test-dataset": 1}


def as_before(command: str) -> str:
    """``command`` as the kit before the split could parse it: the new options left out."""
    words, kept = shlex.split(command), []
    while words:
        word = words.pop(0)
        if word in NEW_OPTIONS:
            del words[: NEW_OPTIONS[word]]
        elif word == "external" and kept and kept[-1] == "--protocol":
            kept.append("paper")
        else:
            kept.append(word)
    return " ".join(kept)


def _old_settings(command: str) -> dict:
    """What the kit before the split made of ``command``: one flat TrainConfig dict."""
    from ctlib.cli import _train_config, build_parser

    args = build_parser().parse_args(shlex.split(command))
    return _train_config(args).to_dict()


def test_the_documents_hold_training_command_lines() -> None:
    commands = collect_commands()
    assert len(commands) >= 10, commands
    assert any("--quick" in c for c in commands) and any("--amp off" in c for c in commands)


def test_every_documented_command_line_gives_the_same_configuration_as_before() -> None:
    from ctlib.cli import build_parser
    from ctlib.options import training_settings

    before = json.loads(FIXTURE.read_text())
    commands = collect_commands()
    missing = sorted({as_before(c) for c in commands} - set(before))
    assert not missing, f"not in {FIXTURE.name} (run this file with --write): {missing}"
    for command in commands:
        config, runtime = training_settings(build_parser().parse_args(shlex.split(command)))
        old = before[as_before(command)]
        assert config.to_dict() == {k: v for k, v in old.items() if k in config.to_dict()}
        assert {k: v for k, v in runtime.to_dict().items() if k in old} == {
            k: v for k, v in old.items() if k in runtime.to_dict()
        }, command


def test_new_options_are_left_out_for_the_comparison() -> None:
    line = "cv --protocol external --dataset a --test-dataset b --epochs 3"
    assert as_before(line) == "cv --protocol paper --dataset a --epochs 3"


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size", "--lr", "--device", "--amp"])
def test_each_training_option_is_generated_with_its_help(flag: str) -> None:
    from ctlib.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["cv"].format_help()
    assert flag in text
    line = text.split(flag, 1)[1].split("\n--", 1)[0]
    assert "default" in line


if __name__ == "__main__" and sys.argv[1:] in (["--write"], ["--add"]):
    # --write: every line anew; --add: only the lines the fixture lacks (a line documented after
    # the split), the others kept as written. Both need the kit from before the split on the
    # path: PYTHONPATH=<a worktree at c3dfb1e> python tests/test_command_lines.py --add
    FIXTURE.parent.mkdir(exist_ok=True)
    table = json.loads(FIXTURE.read_text()) if sys.argv[1] == "--add" and FIXTURE.exists() else {}
    added = {as_before(c) for c in collect_commands()} - set(table)
    table.update({line: _old_settings(line) for line in added})
    FIXTURE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(added)} command lines to {FIXTURE} ({len(table)} in all)")
