"""The README stays true: its commands are the ones CI runs, its config reference lists every key."""

import re
from pathlib import Path

from actlab import activations, config

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_the_two_quick_start_commands():
    install_run, install_test = (block.strip() for block in _bash_blocks()[:2])
    assert install_run.endswith("actlab compare") and "pip install -e ." in install_run
    assert install_test.endswith("pytest") and "pip install -e '.[dev]'" in install_test
    assert install_test in (ROOT / ".ci" / "run").read_text()  # CI runs exactly the README's test command


def test_config_reference_lists_every_key():
    for key, _default, _doc in config.reference():
        assert f"| `{key}` |" in README, key


def test_all_is_documented_exactly():
    section = README.split("## Activations")[1].split("##")[0]
    for name in activations.names():
        assert name in section, name
    assert f"exactly these {len(activations.names())}" in section
