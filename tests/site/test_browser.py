"""The site in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through
Selenium. Every page reachable from the index opens with no console error, every ``<img>`` has loaded
(``naturalWidth > 0``), every internal link resolves, and the t-SNE map shows an image and a label on
hover and on click. A screenshot of the index is saved to ``artifacts/site-index.png``.

The fixture site (tiny models) is checked in every run; the real ``minivis gallery --fast`` site is
checked too, as a slow test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.site.fixtures import build_tiny_site

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


BROKEN_IMAGES = "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
LINKS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"


def crawl(driver, index: Path) -> set[str]:
    """Open every page reachable from ``index``; assert no console errors, images loaded, links resolve."""
    root = index.parent.resolve()
    seen, todo = set(), [index.resolve().as_uri()]
    while todo:
        url = todo.pop()
        page = url.split("#")[0]
        if page in seen:
            continue
        seen.add(page)
        driver.get(page)
        driver.get_log("browser")  # the log of the page before (drained)
        driver.refresh()
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.execute_script(BROKEN_IMAGES) == [], f"{page}: images that did not load"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], f"{page}: console errors {errors}"
        for link in driver.execute_script(LINKS):
            parsed = urlparse(link)
            assert parsed.scheme == "file", f"{page}: link leaves the site: {link}"
            target = Path(unquote(parsed.path))
            assert target.is_file(), f"{page}: broken link {link}"
            assert root in target.resolve().parents, f"{page}: link outside the site: {link}"
            if parsed.fragment:
                todo.append(link)  # checked below on that page
            if target.suffix == ".html":
                todo.append(target.resolve().as_uri() + (f"#{parsed.fragment}" if parsed.fragment else ""))
        anchors = [u.split("#", 1)[1] for u in todo if u.split("#")[0] == page and "#" in u]
        for anchor in anchors:
            assert driver.find_elements(By.ID, anchor), f"{page}: no element #{anchor}"
    return seen


def check_map(driver, site: Path) -> None:
    """Hover over a point: its image and label appear; click another: they follow, and it is marked."""
    driver.get((site / "embeddings.html").resolve().as_uri())
    data = driver.execute_script("return JSON.parse(document.getElementById('map-data').textContent)")
    assert driver.find_element(By.ID, "map-preview").get_attribute("hidden") is not None
    circles = driver.find_elements(By.CSS_SELECTOR, "#map-svg circle")
    assert len(circles) == len(data["x"])
    atlas = driver.find_element(By.ID, "map-atlas")
    assert driver.execute_script("return arguments[0].naturalWidth", atlas) > 0
    for i, how in ((3, "hover"), (7, "click")):
        circle = driver.find_element(By.CSS_SELECTOR, f"#map-svg circle[data-i='{i}']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", circle)
        if how == "hover":
            ActionChains(driver).move_to_element(circle).perform()
        else:
            circle.click()
        preview = driver.find_element(By.ID, "map-preview")
        assert preview.is_displayed(), how
        assert preview.get_attribute("data-i") == str(i)
        background = driver.execute_script("return getComputedStyle(arguments[0]).backgroundImage", preview)
        assert Path(data["atlas"]).name in background
        label = driver.find_element(By.ID, "map-label").text
        assert label == f"#{i}: {data['classes'][data['label'][i]]}"
    assert "picked" in circle.get_attribute("class")


def test_fixture_site_in_chromium(browser, tmp_path):
    index = build_tiny_site(tmp_path / "site", workers=2)  # the parallel build, as `minivis gallery` runs it
    pages = crawl(browser, index)
    assert len(pages) == len(list((tmp_path / "site").glob("*.html")))
    names = {Path(urlparse(p).path).name for p in pages}
    assert {"synth-fast-style.html", "synth-texture.html", "synth-decoder-inversion.html", "photo-alpha.html",
            "mic-fashion_cnn-features.0-c0.html"} <= names
    check_map(browser, tmp_path / "site")
    save_screenshot(browser, index, "site-index-fixture.png")


def save_screenshot(driver, index: Path, name: str) -> Path:
    """A screenshot of ``index`` in ``artifacts/`` (kept after the run, for a person to look at)."""
    driver.get(index.resolve().as_uri())
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    return shot


@pytest.mark.slow
def test_fast_gallery_in_chromium(browser, tmp_path):
    """``minivis gallery --fast`` on the real models, opened page by page; the index screenshot is kept."""
    out = tmp_path / "gallery"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "minivis.cli", "gallery", "--fast", "--out", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    index = out / "index.html"
    pages = crawl(browser, index)
    assert {"index.html", "embeddings.html", "mic-fashion_cnn.html", "synth-class-models.html", "synth-fast-style.html",
            "synth-texture.html", "synth-decoder-inversion.html"} <= {Path(urlparse(p).path).name for p in pages}
    check_map(browser, out)
    save_screenshot(browser, index, "site-index.png")
