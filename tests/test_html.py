"""report.html: one self-contained page, checked by its markup and by rendering it in a real headless browser."""

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from typer.testing import CliRunner

from actlab import cli
from actlab import html as report_html

runner = CliRunner()
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SVG = '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">' \
      '<rect width="10" height="10" fill="#1f77b4"/></svg>\n'


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def named(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]


def tags_of(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    return parser


def assert_loads_nothing(tags: Tags) -> None:
    """No element fetches anything: no src, no stylesheet or script, no <img>/<iframe>/<object>."""
    for tag, attrs in tags.tags:
        assert "src" not in attrs and "srcset" not in attrs, (tag, attrs)
        assert tag not in ("img", "script", "iframe", "object", "embed", "link"), (tag, attrs)
        href = attrs.get("href") or attrs.get("xlink:href") or ""
        if tag != "a":  # a link is followed only on click; anything else with a URL would be a request
            assert not href or href.startswith("#"), (tag, attrs)


def test_markdown_tables_and_figures_become_one_page(tmp_path):
    (tmp_path / "loss.svg").write_text(SVG)
    text = ("# actlab report: demo\n\n| rank | activation |\n|---|---|\n| 1 | `relu` |\n\n"
            "![Loss per epoch](loss.png)\n\n![Gone](gone.png)\n\nA <script>alert(1)</script> in text stays text.\n")
    path = report_html.write_html(tmp_path, text, {"loss": tmp_path / "loss.png", "gone": tmp_path / "gone.png"})
    page = path.read_text()
    assert path == tmp_path / "report.html"
    tags = tags_of(page)
    assert [t for t, _ in tags.tags if t in ("table", "th", "td")] == ["table", "th", "th", "td", "td"]
    assert len(tags.named("svg")) == 1 and tags.named("rect")[0]["fill"] == "#1f77b4"
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page  # one document: the SVG's prolog dropped
    assert "&lt;script&gt;" in page and "figure not available: Gone" in page
    assert "<title>actlab report: demo</title>" in page
    assert_loads_nothing(tags)


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def run_browser(exe: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(browser() is None, reason="no headless browser installed (apt-get install chromium)")
def test_report_html_renders_in_a_real_browser(tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["compare", "-a", "relu,sigmoid,tanh", "--seeds", "2", "--epochs", "4",
                                     "--set", "train.workers=1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    page = folder / "report.html"
    figures = sorted(p.stem for p in folder.glob("*.svg"))
    assert len(figures) == 5  # loss curves, final loss, gradient norms, dead units, critical differences

    exe = browser()
    dom = run_browser(exe, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    tags = tags_of(dom.stdout)
    spans = [a for a in tags.named("span") if a.get("class") == "figure"]
    assert len(spans) == len(tags.named("svg")) == len(figures)  # every figure inline, as parsed by the browser
    assert "Ranking" in dom.stdout and len(tags.named("table")) >= 2
    assert_loads_nothing(tags)

    shot = tmp_path / "shot.png"
    run = run_browser(exe, tmp_path, f"--screenshot={shot}", "--window-size=1200,4000", page.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    pixels = image.imread(shot)[..., :3]  # (height, width, RGB) in [0, 1]
    assert pixels.std() > 0.05  # not blank
    # matplotlib's first colour (C0, #1f77b4) is drawn only inside the figures: they were rendered
    c0 = np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=2) < 0.05
    assert c0.sum() > 500
