"""Open a report page in headless Chromium: check that it loads without console errors, that every image decoded
and that the expected sections are there, and save a screenshot.

    python scripts/report_page_check.py runs/quickstart/report.html --png docs/quickstart_report.png \
        --sections overview,training,clean,whitebox,transfer,defences,worst --height 2200

Needs Debian's ``chromium`` and ``chromium-driver`` (``bash scripts/install_browser.sh``) and the Python package
``selenium`` (in the ``dev`` extra). Prints one JSON object: the sections found, the images and their sizes, the
console messages and the screenshot's path; exits 1 when a check fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
         "--hide-scrollbars")
"""Headless, as root in a container, and silent on a closed network (no update or sync connections)."""


def browser_paths() -> tuple[str, str] | None:
    """Chromium and ChromeDriver on PATH, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium driven by selenium, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("Chromium and ChromeDriver are needed (bash scripts/install_browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def inspect_page(driver: Any, page: Path) -> dict[str, Any]:
    """Load ``page`` and read back what a reader would see: console messages, images, sections."""
    driver.get(page.resolve().as_uri())
    state = driver.execute_script("return document.readyState")
    images = driver.execute_script(
        "return [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, "
        "height: i.naturalHeight}))")
    sections = driver.execute_script(
        "return [...document.querySelectorAll('main section')].map(s => ({id: s.id, "
        "title: s.querySelector('h2') ? s.querySelector('h2').textContent : '', height: s.offsetHeight}))")
    console = [{"level": m.get("level"), "message": m.get("message")} for m in driver.get_log("browser")]
    return {"state": state, "images": images, "sections": sections, "console": console,
            "title": driver.title}


def problems(found: dict[str, Any], expected: Sequence[str] = ()) -> list[str]:
    """What is wrong with an inspected page: not loaded, console errors, broken images, missing sections."""
    out = []
    if found["state"] != "complete":
        out.append(f"page not loaded (readyState {found['state']})")
    out += [f"console {m['level']}: {m['message']}" for m in found["console"] if m["level"] in ("SEVERE", "ERROR")]
    out += [f"broken image {i['alt']!r}" for i in found["images"] if not (i["complete"] and i["width"] > 0)]
    ids = [s["id"] for s in found["sections"]]
    out += [f"missing section {s!r}" for s in expected if s not in ids]
    out += [f"empty section {s['id']!r}" for s in found["sections"] if s["height"] <= 0]
    return out


def screenshot(driver: Any, path: Path, *, height: int | None = None) -> Path:
    """A PNG of the whole page (or its top ``height`` CSS pixels) written to ``path``."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], height or size["height"]),
            "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                              "clip": clip})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(base64.b64decode(shot["data"]))
    tmp.replace(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path, help="the report page (.html)")
    ap.add_argument("--png", type=Path, help="write a screenshot here")
    ap.add_argument("--sections", default="", help="comma-separated section ids the page must have")
    ap.add_argument("--height", type=int, help="screenshot only the top N CSS pixels (default: the whole page)")
    args = ap.parse_args(argv)
    if not args.page.is_file() or args.page.suffix.lower() != ".html":
        print(f"report_page_check: error: {args.page}: not an .html file", file=sys.stderr)
        return 2
    if browser_paths() is None:
        print("report_page_check: error: Chromium and ChromeDriver are needed (bash scripts/install_browser.sh)",
              file=sys.stderr)
        return 2
    with chromium() as driver:
        found = inspect_page(driver, args.page)
        if args.png is not None:
            found["screenshot"] = str(screenshot(driver, args.png, height=args.height))
    found["problems"] = problems(found, [s for s in args.sections.split(",") if s])
    print(json.dumps(found, indent=2))
    return 1 if found["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
