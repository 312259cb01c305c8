"""report.html: one self-contained page, checked by its markup and by rendering it in a real headless browser."""

import base64
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
DATA_PNG = "data:image/png;base64,"


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
    """No element fetches anything: no stylesheet, script, frame or object; a src only on an <img>, holding the
    PNG itself; and the page's policy lets the browser show nothing else."""
    (policy,) = [a["content"] for a in tags.named("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert policy == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    for tag, attrs in tags.tags:
        assert "srcset" not in attrs and tag not in ("script", "iframe", "object", "embed", "link"), (tag, attrs)
        assert "src" not in attrs or (tag == "img" and attrs["src"].startswith(DATA_PNG)), (tag, attrs)
        href = attrs.get("href") or attrs.get("xlink:href") or ""
        if tag != "a":  # a link is followed only on click; anything else with a URL would be a request
            assert not href or href.startswith("#"), (tag, attrs)


def test_markdown_tables_and_figures_become_one_page(tmp_path):
    image.imsave(tmp_path / "loss.png", np.full((6, 8, 3), [0x1F, 0x77, 0xB4], dtype=np.uint8))
    (tmp_path / "fake.png").write_text("<svg onload='alert(1)'/>")  # not a PNG: not shown as one
    text = ("# actlab report: demo\n\n| rank | activation |\n|---|---|\n| 1 | `relu` |\n\n"
            "![Loss per epoch](loss.png)\n\n![Gone](gone.png)\n\n![Fake](fake.png)\n\n"
            "A <script>alert(1)</script> in text stays text.\n")
    figures = {name: tmp_path / f"{name}.png" for name in ("loss", "gone", "fake")}
    path = report_html.write_html(tmp_path, text, figures)
    page = path.read_text()
    assert path == tmp_path / "report.html"
    tags = tags_of(page)
    assert [t for t, _ in tags.tags if t in ("table", "th", "td")] == ["table", "th", "th", "td", "td"]
    (img,) = tags.named("img")
    assert img["alt"] == "Loss per epoch"
    # the PNG's own bytes, not a copy drawn again
    assert base64.b64decode(img["src"].removeprefix(DATA_PNG)) == (tmp_path / "loss.png").read_bytes()
    assert "&lt;script&gt;" in page and "figure not available: Gone" in page and "figure not available: Fake" in page
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
    figures = sorted(p.stem for p in folder.glob("*.png"))
    assert len(figures) == 5  # loss curves, final loss, gradient norms, dead units, critical differences
    assert not list(folder.glob("*.svg"))  # each figure drawn once

    exe = browser()
    dom = run_browser(exe, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    tags = tags_of(dom.stdout)
    shown = [a for a in tags.named("img") if a.get("class") == "figure"]
    assert len(shown) == len(tags.named("img")) == len(figures)  # every figure inline, as parsed by the browser
    assert all(a["alt"] for a in shown) and not [a for a in tags.named("span") if a.get("class") == "missing"]
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

    # in a window narrower than any figure, every figure shrinks to the page's width: the page's right padding
    # (1.5em, 22 px) stays blank, where a figure at its own width (>= 825 px) would run on to the window's edge
    run = run_browser(exe, tmp_path, f"--screenshot={shot}", "--window-size=480,12000", "--hide-scrollbars",
                      page.as_uri())
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (12000, 480), run.stderr[-2000:]
    c0 = np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=2) < 0.05
    assert c0.any() and (pixels[:, -16:] > 0.95).all()  # the figures shown, within the page's width
