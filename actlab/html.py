"""report.html: report.md as one self-contained web page, its figures inline, viewable offline.

The Markdown is converted by markdown-it-py (CommonMark with tables, as GitHub shows report.md); each figure's
image link becomes the figure's own PNG inside the page (a ``data:`` URL), so the page loads nothing: no file
beside it, no network. The PNG report.md shows, not a second drawing of it: each figure is drawn once.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path

from markdown_it import MarkdownIt

from actlab import storage

# The page may load nothing at all (no scripts, no fonts, no images but those inside it): the browser enforces it.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; }
h1, h2 { border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f0f2f4;
       padding: .1em .3em; border-radius: 4px; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d1d9e0; padding: .3em .7em; text-align: left; white-space: nowrap; }
tr:nth-child(even) { background: #f6f8fa; }
img.figure { max-width: 100%; height: auto; display: block; }
.missing { color: #9a6700; font-style: italic; }
"""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_url(png: bytes) -> str:
    """A PNG file's bytes as a ``data:`` URL, the only kind of image the page's policy lets it show."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file (no PNG signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render(markdown_text: str, images: Mapping[str, str], title: str = "actlab report") -> str:
    """The whole page: ``markdown_text`` as HTML, an image linking to a key of ``images`` (a PNG's file name)
    shown from that ``data:`` URL; any other image shows as its alt text (the page loads nothing)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # html off: text from a folder stays text

    def image(renderer, tokens, idx, options, env) -> str:  # a renderer method: bound to it by add_render_rule
        token = tokens[idx]
        alt = html.escape(renderer.renderInlineAsText(token.children or [], options, env))
        url = images.get(str(token.attrGet("src") or ""))
        if url is None:
            return f'<span class="missing">[figure not available: {alt}]</span>'
        return f'<img class="figure" alt="{alt}" src="{html.escape(url)}">'

    md.add_render_rule("image", image)
    body = md.render(markdown_text)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def write_html(folder: Path, markdown_text: str, figures: Mapping[str, Path]) -> Path:
    """Write ``folder``/report.html from report.md's text and the figures (name -> PNG path, as
    ``plots.save_all`` returns them; one missing or not a PNG shows as its alt text); returns its path."""
    images = {}
    for png in map(Path, figures.values()):
        data = png.read_bytes() if png.is_file() else b""
        if data.startswith(PNG_SIGNATURE):
            images[png.name] = png_data_url(data)
    first = next((line for line in markdown_text.splitlines() if line.startswith("# ")), "# actlab report")
    return storage.write_text(Path(folder) / "report.html", render(markdown_text, images, first[2:].strip()))
