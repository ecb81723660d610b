"""The web page in a real headless Chromium: chat, live task graph, drag-and-drop upload, inline artifacts, history.

Needs Debian's `chromium` (`make test` installs it) and the `playwright` package (no browser download). Skipped
where they are missing, except with `CI` set (to anything), where that is a failure.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from serverkit import Served

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "page-key"


def _require_browser():
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        missing = "Debian's chromium (apt-get install -y chromium)"
    if missing:
        missing(f"the page test needs {missing}")


@pytest.fixture
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    folder = os.environ.get("HUGGINGGPT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)
    return path


def _send(page, text: str) -> None:
    count = page.locator(".assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function(f"document.querySelectorAll('.assistant').length > {count}")


def _last(page, selector: str):
    return page.locator(".assistant").last.locator(selector)


def _wait_done(page) -> None:
    page.locator(".assistant").last.and_(page.locator("[data-status=done]")).wait_for(timeout=20_000)


def test_the_page_chats_draws_the_live_graph_and_shows_artifacts(browser, tmp_path):
    with Served(tmp_path, api_keys=KEY, delay=0.05) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")

        # The server has keys: the page asks for one.
        page.locator("#key-form").wait_for()
        page.fill("#key-input", KEY)
        page.click("#key-form button")

        # A two-task plan: both nodes end done, with their models, an edge between them, the image inline.
        _send(page, "draw a green frog and describe it")
        _wait_done(page)
        nodes = _last(page, ".node")
        assert nodes.count() == 2
        assert [nodes.nth(i).get_attribute("data-state") for i in range(2)] == ["done", "done"]
        assert "test/painter" in nodes.nth(0).text_content()
        assert "test/describer" in nodes.nth(1).text_content()
        assert _last(page, ".edge").count() == 1
        assert "a 96x64 green image" in _last(page, ".answer").text_content()
        image = _last(page, ".artifact img")
        image.wait_for()
        page.wait_for_function("() => [...document.querySelectorAll('.artifact img')].every(i => i.naturalWidth)")
        assert image.evaluate("img => img.naturalWidth") == 96

        # Node states change live: the gate holds its task, the node shows running, then done.
        _send(page, "gate block for a moment")
        _last(page, ".node[data-state=running]").wait_for(timeout=10_000)
        assert "test/gate" in _last(page, ".node").text_content()
        _screenshot(page, tmp_path, "page-running.png")
        server.gate.opened.set()
        _wait_done(page)
        assert _last(page, ".node").get_attribute("data-state") == "done"

        _send(page, "gate fail on purpose")
        _wait_done(page)
        assert _last(page, ".node").get_attribute("data-state") == "failed"
        assert "the gate refused this text" in _last(page, ".problems").text_content()

        # Drag and drop an image, then ask about it.
        buffer = io.BytesIO()
        Image.new("RGB", (10, 10), (230, 200, 40)).save(buffer, "PNG")
        page.evaluate(
            """(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const data = new DataTransfer();
                data.items.add(new File([bytes], "sun.png", { type: "image/png" }));
                document.querySelector("#main").dispatchEvent(
                    new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
            }""",
            base64.b64encode(buffer.getvalue()).decode(),
        )
        page.locator("#attachments .chip", has_text="sun.png").wait_for()
        _send(page, "describe this")
        _wait_done(page)
        assert "a 10x10 yellow image" in _last(page, ".answer").text_content()
        assert page.locator("#attachments .chip").count() == 0

        # Audio plays inline.
        _send(page, "say good morning")
        _wait_done(page)
        audio = _last(page, ".artifact audio")
        audio.wait_for()
        assert audio.evaluate("a => a.src.startsWith('blob:')")
        page.wait_for_function("() => document.querySelector('.artifact audio').duration > 0")
        _screenshot(page, tmp_path, "page.png")

        # History survives a reload: the conversation is listed and opens with its graphs and files.
        conversation = page.evaluate("location.hash.slice(1)")
        assert conversation.startswith("conv-")
        page.goto(server.url + "/")
        page.locator(f"#conversations a[data-conversation-id='{conversation}']").click()
        page.locator(".assistant").nth(4).wait_for()
        states = page.locator(".node").evaluate_all("nodes => nodes.map(n => n.dataset.state)")
        assert states == ["done", "done", "done", "failed", "done", "done"]
        page.locator(".artifact img").first.wait_for()
        assert page.locator(".artifact audio").count() == 1
        _screenshot(page, tmp_path, "page-history.png")
        assert errors == []
