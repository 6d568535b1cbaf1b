"""The HTML report in a real headless browser (Debian's chromium through chromedriver and
selenium): it renders without console errors, and the score, verdict and blocking items read
from the rendered DOM are the JSON report's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
NGINX = Path("/usr/sbin/nginx")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _report(tmp_path: Path, fixture: str, *extra: str) -> tuple[Path, dict[str, Any]]:
    """tern migrate when nginx is installed (traffic in the report), else tern report."""
    conf = REPO / "fixtures" / "nginx" / fixture / "nginx.conf"
    out = tmp_path / fixture
    if NGINX.exists():
        subprocess.run([sys.executable, "-m", "migrate.cli", "migrate", str(conf), "-o",
                        str(out), *extra], cwd=REPO, capture_output=True, timeout=240)
    else:
        out.mkdir()
        for fmt in ("html", "json"):
            subprocess.run([sys.executable, "-m", "migrate.cli", "report", str(conf), "-o",
                            str(out / f"report.{fmt}"), *extra], cwd=REPO,
                           capture_output=True, timeout=120)
    return out / "report.html", json.loads((out / "report.json").read_text())


def test_console_error_detection_works(browser: Any, tmp_path: Path) -> None:
    """Negative control: a page with a script error is caught by the same check."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><link rel=icon href='data:,'></head><body>"
                    "<script>undefinedFunction()</script></body></html>")
    browser.get(page.as_uri())
    assert _errors(browser), "a script error must show in the browser log"


@pytest.mark.parametrize("fixture,extra", [
    ("static-site", ("--fail-on", "unsupported", "--fail-on", "lint", "--fail-on", "diffs")),
    ("vhosts", ()),
])
def test_rendered_report_matches_json(browser: Any, tmp_path: Path, fixture: str,
                                      extra: tuple[str, ...]) -> None:
    from selenium.webdriver.common.by import By

    html, doc = _report(tmp_path, fixture, *extra)
    _errors(browser)  # drain entries of earlier pages
    browser.get(html.as_uri())
    assert _errors(browser) == []
    text = lambda el: el.get_attribute("textContent").strip()  # noqa: E731
    assert text(browser.find_element(By.ID, "score")) == str(doc["score"])
    verdict = browser.find_element(By.ID, "verdict")
    assert text(verdict) == doc["verdict"] and verdict.is_displayed()
    # CSS applied: the verdict chip is coloured, not the default transparent
    assert verdict.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "")
    blocks = browser.find_elements(By.CSS_SELECTOR, "#blocking .block")
    assert len(blocks) == len(doc["blocking"])
    base = os.path.dirname(doc["config"])
    for el, item in zip(blocks, doc["blocking"], strict=True):
        assert el.get_attribute("data-category") == item["category"]
        where = text(el.find_element(By.CLASS_NAME, "where"))
        rel = os.path.relpath(item["file"], base)
        assert where == (f"{rel}:{item['line']}" if item["line"] else rel)
        # free text names files relative to the config's directory
        short = lambda s: s.replace(base + "/", "")  # noqa: E731
        title = text(el.find_element(By.CLASS_NAME, "title"))
        assert title == item["category"] + short(item["title"])
        assert text(el.find_element(By.CLASS_NAME, "action")) == short(item["action"])
        assert el.is_displayed()
    if not doc["blocking"]:
        assert "No blocking items." in text(browser.find_element(By.ID, "blocking"))
    # the charts are drawn with a size
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert charts and all(c.size["width"] > 300 and c.size["height"] > 20 for c in charts)
    if doc["traffic"]:
        assert browser.find_element(By.ID, "diff-rates").is_displayed()
        assert browser.find_element(By.ID, "latency").is_displayed()
    browser.save_screenshot(str(tmp_path / f"{fixture}.png"))
