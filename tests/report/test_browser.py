"""The report of a small study in a real headless browser (Chromium): it loads without console errors, no image is
broken, every section of the study is there and has content, and a screenshot is saved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from script_loader import load_script

check = load_script("report_page_check")
pytest.importorskip("selenium", reason="selenium is in the dev extra")
pytestmark = pytest.mark.skipif(check.browser_paths() is None,
                                reason="needs Chromium and ChromeDriver: bash scripts/install_browser.sh")

SECTIONS = ["overview", "training", "clean", "whitebox", "transfer", "defences", "worst"]


def test_report_opens_in_chromium(small_study_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    shutil.copyfile(small_study_dir / "report.html", page)  # alone: the page needs nothing beside it
    with check.chromium() as driver:
        found = check.inspect_page(driver, page)
        shot = check.screenshot(driver, tmp_path / "report.png")
    assert check.problems(found, SECTIONS) == []
    assert [s["id"] for s in found["sections"]] == SECTIONS
    assert found["images"] and all(i["width"] > 100 and i["height"] > 100 for i in found["images"])
    assert found["title"] == "Robustness report: small"
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000


def test_the_check_sees_broken_pages(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<html><body><main><section id="a"><h2>A</h2><img alt="x" src="data:image/png;base64,AAAA">'
                    "</section></main><script>console.error('boom')</script></body></html>")
    with check.chromium() as driver:
        found = check.inspect_page(driver, page)
    said = check.problems(found, ["a", "b"])
    assert "broken image 'x'" in said and "missing section 'b'" in said
    assert any("boom" in p for p in said)
