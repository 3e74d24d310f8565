"""A page opened in a real browser: Debian's headless Chromium driven through its chromedriver.

`check_page(path, screenshot)` loads an HTML file and returns what a reader would meet: the images
that did not load, and the errors the console logged (a missing file shows there too); it writes a
screenshot of the whole page.  `missing()` says what is not installed, for a skip message.  The
browser is the system's (`make test` installs it as root, as it does Graphviz): a browser that
downloads itself at run time cannot reach the internet from these machines.
"""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"


def missing():
    """Why a page cannot be checked here, or None."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if absent:
        return (f"{' and '.join(absent)} not installed: apt-get install chromium chromium-driver "
                "(make test does it when run as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: pip install -e '.[dev]'"
    return None


def check_page(path, screenshot, width=1200, max_height=20000):
    """(broken images as [src], console errors as [message]) of the page at `path`; writes `screenshot`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},900"):
        options.add_argument(arg)
    options.binary_location = shutil.which(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which(CHROMEDRIVER)), options=options)
    try:
        driver.get(Path(path).resolve().as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height), max_height))
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return [src for src, ok in images if not ok], errors, len(images)
