"""The HTML pages the command writes — the demo's and the gallery's index.html — in a real browser:
every image loads, the console stays quiet, and a screenshot is written to look at."""
import pytest

from browser import check_page, missing
from minigrad_cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]


def test_the_checker_sees_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "index.html"
    page.write_text('<!DOCTYPE html><html><body><img src="gone.svg"><script>console.error("boom")</script>'
                    "</body></html>", encoding="utf-8")
    broken, errors, _ = check_page(page, tmp_path / "shot.png")
    assert broken == ["gone.svg"] and any("gone.svg" in e for e in errors) and any("boom" in e for e in errors)


def test_the_demo_page_loads_every_picture_without_errors(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "2", "--backend", "graph", "--adding-steps", "5"]) == 0
    broken, errors, count = check_page(out / "index.html", out / "screenshot.png")
    assert count >= 12 and broken == [] and errors == []
    assert (out / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_gallery_page_loads_every_picture_without_errors(tmp_path):
    out = tmp_path / "figures"
    assert main(["figures", "--out", str(out)]) == 0
    broken, errors, count = check_page(out / "index.html", out / "screenshot.png")
    assert count == len(list(out.glob("*.svg"))) >= 20 and broken == [] and errors == []
    assert (out / "screenshot.png").stat().st_size > 10_000
