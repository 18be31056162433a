"""The demo board in a real headless browser: Debian's chromium, driven by selenium.

Two browsers (two profiles, two users) open the board served by hypercorn's trio worker.
A card one of them adds appears in the other's page without a reload (server-sent
events), and a chat message crosses over the WebSocket. Skips, saying why, where no
browser or driver is installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.board_server import BoardServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no headless browser: apt-get install chromium chromium-driver to run it (.ci/run does, as root)",
    ),
]


@pytest.fixture
def board_url(tmp_path: Path) -> Iterator[str]:
    """The board, served on 127.0.0.1 by hypercorn's trio worker in a thread of its own."""
    server = BoardServer(tmp_path / "data", secret_key="browser-test")
    base = server.start()
    try:
        yield base
    finally:
        server.stop()


def browser(profile: Path) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not try to download a driver
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None  # the tests that use a browser are skipped without one
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    return driver


def sign_in(driver: Any, base: str, name: str) -> None:
    driver.get(base + "/")
    WebDriverWait(driver, 10).until(expected_conditions.url_contains("/signin"))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, 10).until(expected_conditions.text_to_be_present_in_element((By.ID, "whoami"), name))


def test_a_card_and_a_chat_message_cross_between_two_browsers(board_url: str, tmp_path: Path) -> None:
    ada, bob = browser(tmp_path / "ada"), browser(tmp_path / "bob")
    try:
        sign_in(ada, board_url, "ada")
        sign_in(bob, board_url, "bob")
        WebDriverWait(bob, 10).until(lambda d: d.execute_script("return feed.readyState") == 1)  # SSE open
        WebDriverWait(ada, 10).until(lambda d: d.execute_script("return chat.readyState") == 1)  # WS open
        WebDriverWait(bob, 10).until(lambda d: d.execute_script("return chat.readyState") == 1)

        ada.find_element(By.ID, "title").send_keys("Seen live")
        ada.find_element(By.ID, "add").click()
        card = WebDriverWait(bob, 10).until(
            expected_conditions.presence_of_element_located((By.XPATH, "//li[contains(., 'Seen live')]"))
        )
        assert card.find_element(By.TAG_NAME, "small").text.strip() == "ada"

        bob.find_element(By.ID, "chat-input").send_keys("hi ada")
        bob.find_element(By.CSS_SELECTOR, "#chat-form button").click()
        WebDriverWait(ada, 10).until(expected_conditions.text_to_be_present_in_element((By.ID, "messages"), "hi ada"))
        bob.save_screenshot(str(tmp_path / "bob.png"))
        assert (tmp_path / "bob.png").stat().st_size > 0
    finally:
        ada.quit()
        bob.quit()
