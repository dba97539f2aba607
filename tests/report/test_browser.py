"""report.html in a real browser: headless Chromium (Debian's package, installed by `make
test`'s setup) driven by Playwright. The page must render with no console error, load every
image from inside itself, draw every chart, and weigh what its parts add up to."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from curate.report import build_report

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()),
    shutil.which("chromium"),
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Any:
    if CHROMIUM is None:
        pytest.skip("no Chromium: `apt-get install chromium` (make test does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the dev extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.mark.parametrize("corpus", ["corpus", "video-corpus"])
def test_the_report_renders_in_chromium_with_nothing_broken_or_fetched(
    browser: Any, demo_runs: Path, tmp_path: Path, corpus: str
) -> None:
    from plotly.offline import get_plotlyjs

    report = build_report(demo_runs / corpus, tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.path.as_uri())
    page.wait_for_load_state("load")
    assert problems == []
    # self-contained: the only request is the file itself (images are data: URIs)
    assert [u for u in requests if not u.startswith("data:")] == [report.path.as_uri()]
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.alt])"
    )
    assert len(images) == report.images > 0 and all(ok for ok, _ in images), images
    plots = page.evaluate(
        "Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".map(d => d.querySelectorAll('.main-svg').length)"
    )
    assert len(plots) == report.charts > 0 and all(n > 0 for n in plots)  # each one drawn
    # the weight: plotly.js once, the thumbnails, and little else
    thumbs = sum(len(s) for s in page.evaluate("Array.from(document.images).map(i => i.src)"))
    plotly = len(get_plotlyjs())
    assert plotly < report.bytes < plotly + thumbs + 600_000, (report.bytes, plotly, thumbs)
    sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert sections == report.sections
    page.close()
