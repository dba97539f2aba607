"""Refresh docs/report.png, the README's picture of a report's first screen.

    .venv/bin/python docs/report_screenshot.py demo-out/corpus/report.html

Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, 1280x900, as the
browser test opens the page.
"""

from __future__ import annotations

import sys
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    page_path = Path(sys.argv[1]).resolve()
    out = Path(__file__).resolve().parent / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
