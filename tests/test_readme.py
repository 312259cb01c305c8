"""The README stays true: its Python snippets run, its commands run (shortened), its error examples print
exactly what it shows, CI runs its Quick start, and its config reference lists every key."""

import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actlab import activations, cli, config

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
FAST = ["train.epochs=2", "compare.seeds=2", "train.workers=1"]  # appended to train and compare: seconds, not minutes
NEED_ARGUMENTS = {"rm", "report", "show", "diff"}
NOT_RUN = {"actlab --install-completion"}  # would edit the shell's start-up files; checked in --help instead
runner = CliRunner()


def _blocks(lang: str) -> list[str]:
    """The README's fenced code blocks of language ``lang`` ("" for plain ones), in order."""
    blocks, current, kind = [], [], None
    for line in README.splitlines():
        if line.startswith("```"):
            if kind is None:
                kind, current = line[3:].strip(), []
            else:
                if kind == lang:
                    blocks.append("\n".join(current) + "\n")
                kind = None
        elif kind is not None:
            current.append(line)
    return blocks


def _commands() -> list[str]:
    """Every `actlab ...` command of the README: in bash blocks, after `$ ` in output blocks, in inline code."""
    found = []
    for block in _blocks("bash"):
        found += [part.strip() for line in block.splitlines() for part in line.split("&&")
                  if part.strip().startswith("actlab ")]
    found += [line[2:] for block in _blocks("") for line in block.splitlines() if line.startswith("$ actlab ")]
    found += re.findall(r"`(actlab(?: [^`]*)?)`", README)
    expanded = []
    for command in found:  # `actlab train|compare ...` is two commands
        match = re.match(r"actlab (\w+)\|(\w+)(.*)", command)
        expanded += [f"actlab {match[1]}{match[3]}", f"actlab {match[2]}{match[3]}"] if match else [command]
    return list(dict.fromkeys(expanded))


def test_the_two_quick_start_commands():
    install_run, install_test = (block.strip() for block in _blocks("bash")[:2])
    assert install_run.endswith("actlab compare") and "pip install -e ." in install_run
    assert install_test.endswith("pytest") and "pip install -e '.[dev]'" in install_test
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_run in ci and install_test in ci  # CI runs exactly the README's two commands


def test_python_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # from anywhere: shipped configs by name, folders under ./runs
    snippets = _blocks("python")
    assert snippets
    for i, code in enumerate(snippets):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), {"__name__": f"readme_{i}"})
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "report.md").is_file() and (folder / "stats.json").is_file()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder to run the README's commands in, with experiment folders for RUN_DIR, RUN_A, RUN_B."""
    root = tmp_path_factory.mktemp("readme")
    runs = root / "runs"
    for name in ("a", "b"):
        result = runner.invoke(cli.app, ["compare", "-a", "relu,tanh", "--name", name, "-q", "--no-report",
                                         "--out", str(runs), *FAST])
        assert result.exit_code == 0, result.output
    return root


def _args(command: str, sandbox: Path, scratch: Path) -> list[str]:
    """The README's command, runnable: optional [parts] kept, placeholders made real, training shortened."""
    runs = sandbox / "runs"
    a, b = sorted(runs.iterdir())[:2]
    doomed = scratch / "doomed"
    shutil.copytree(a, doomed)  # `actlab rm` deletes a copy
    text = command.replace("[KEY=VALUE ...]", "").replace("[", "").replace("]", "")
    words = shlex.split(text)[1:]
    places = {"RUN_DIR": str(doomed if words[:1] == ["rm"] else a), "RUN_A": str(a), "RUN_B": str(b),
              "DIR": str(runs), "FILE.png": str(scratch / "acts.png"), "COMMAND": "compare"}
    words = [places.get(w, str(a / "config.yaml") if w == "runs/.../config.yaml" else w) for w in words]
    if len(words) == 1 and words[0] in NEED_ARGUMENTS:  # a mention of the command in the text
        words.append("--help")
    if words[:1] in (["train"], ["compare"]):
        if words[0] == "compare" and len(words) > 1:
            words.append("--no-report")  # figures cost seconds: only the plain `actlab compare` draws them here
        words += [*FAST, "compare.activations=[relu,tanh]", "--out", str(scratch / "out")]
    if words[:1] == ["resume"]:  # a copy of a folder marked interrupted: resume finishes it
        shutil.copytree(a, scratch / "stopped")
        status = scratch / "stopped" / "status.json"
        status.write_text(status.read_text().replace('"complete"', '"incomplete"'))
        words = ["resume", str(scratch / "stopped"), "--no-report", "-q"]
    if words[:1] == ["rm"] and "--yes" not in words:
        words.append("--yes")
    return words


def test_every_readme_command_runs(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(sandbox)
    commands = _commands()
    for expected in ("actlab compare", "actlab runs DIR", "actlab diff RUN_A RUN_B", "actlab rm RUN_DIR", "actlab -h"):
        assert any(c.replace("[", "").replace("]", "").startswith(expected) for c in commands), expected
    errors = {line[2:] for block in _blocks("") for line in block.splitlines() if line.startswith("$ ")}
    for i, command in enumerate(c for c in commands if c not in errors and c not in NOT_RUN):
        scratch = tmp_path / str(i)
        scratch.mkdir()
        args = _args(command, sandbox, scratch)
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 0, f"README command `{command}` -> actlab {shlex.join(args)}:\n{result.output}"
    help_text = runner.invoke(cli.app, ["--help"]).output
    assert all(c.split()[1] in help_text for c in NOT_RUN)


def test_error_examples_print_what_the_readme_shows(sandbox, monkeypatch):
    monkeypatch.chdir(ROOT)  # `actlab rm README.md`: the README itself, which must survive
    pairs = [(block.splitlines()[i][2:], block.splitlines()[i + 1]) for block in _blocks("")
             for i, line in enumerate(block.splitlines()) if line.startswith("$ actlab ")]
    assert len(pairs) >= 4
    for command, shown in pairs:
        if "--device cuda" in command:
            if torch.cuda.is_available():
                continue
            shown = shown.split(" (torch")[0]  # the torch build named after it differs by machine
        result = runner.invoke(cli.app, shlex.split(command)[1:])
        assert result.exit_code == 2 and result.output.strip().startswith(shown), (command, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert (ROOT / "README.md").is_file()


def test_config_reference_lists_every_key():
    for key, _default, _doc in config.reference():
        assert f"| `{key}` |" in README, key


def test_shipped_configs_are_the_documented_ones():
    for name in config.shipped_configs():
        assert f"`configs/{name}.yaml`" in README, name
    assert (ROOT / "configs").resolve() == config.SHIPPED_DIR.resolve()  # the top-level folder is the package's


def test_all_is_documented_exactly():
    section = README.split("## Activations")[1].split("##")[0]
    for name in activations.names():
        assert name in section, name
    assert f"exactly these {len(activations.names())}" in section
