"""The board made real, in a real headless browser (Debian's chromium, driven by selenium).

Two browser sessions on one board served by hypercorn's trio worker: a card created, edited,
moved (with the keyboard fallback) and deleted in one is seen live in the other; the chat
crosses between them, also across a server restart (the page reconnects by itself, nobody is
signed out); an export cancelled midway runs its job's ``finally``; the inspector shows a slow
search in flight, then "client disconnected" once its tab is closed. Screenshots at 1280x800
and 390x844 are saved as test artifacts (``$BOARD_SCREENSHOTS``, else pytest's tmp dir).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.board_server import BoardServer
from tests.e2e.test_browser import CHROMEDRIVER, CHROMIUM, browser, sign_in

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no headless browser: install Debian's chromium and chromium-driver (./scripts/test does, as root)",
    ),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BoardServer]:
    board = BoardServer(tmp_path / "data", export_step_seconds=0.5, search_deadline=30)
    board.start()
    try:
        yield board
    finally:
        board.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BOARD_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def base_of(server: BoardServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    return WebDriverWait(driver, timeout).until(condition)


def row_text(driver: Any, xpath: str, *needles: str, timeout: float = 4) -> str:
    """The text of the first row at ``xpath`` once it holds every one of ``needles``. The
    inspector redraws its tables on every update, so a row found a moment ago may be gone:
    each try finds it again (a stale one is just another try)."""

    seen: list[str] = []

    def found(d: Any) -> str | Literal[False]:
        for element in d.find_elements(By.XPATH, xpath):
            text: str = element.text
            seen.append(text)
            if all(needle in text for needle in needles):
                return text
        return False

    try:
        text: str = WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(found)
    except TimeoutException:
        last = seen[-1:]
        raise AssertionError(f"no row at {xpath} held {needles!r} within {timeout} s; last seen: {last!r}") from None
    return text


def live(driver: Any) -> None:
    wait(driver, lambda d: d.execute_script("return feed.readyState") == 1)  # SSE open
    wait(driver, lambda d: d.execute_script("return chat.readyState") == 1)  # WebSocket open


def card_in(driver: Any, column: str, text: str) -> Any:
    xpath = f"//ul[@id='column-{column}']/li[contains(., '{text}')]"
    return wait(driver, expected_conditions.presence_of_element_located((By.XPATH, xpath)))


def test_cards_created_edited_moved_deleted_live_and_screenshots(
    server: BoardServer, tmp_path: Path, shots: Path
) -> None:
    base = base_of(server)
    ada, bob = browser(tmp_path / "ada"), browser(tmp_path / "bob")
    try:
        sign_in(ada, base, "ada")
        sign_in(bob, base, "bob")
        live(ada)
        live(bob)

        ada.find_element(By.ID, "title").send_keys("Write the docs")
        ada.find_element(By.ID, "body").send_keys("inspector.md")
        ada.find_element(By.ID, "add").click()
        seen = card_in(bob, "todo", "Write the docs")
        card_id = seen.get_attribute("data-id")

        # Edit (two prompts), in ada's page; seen in bob's.
        card_in(ada, "todo", "Write the docs").find_element(By.CSS_SELECTOR, "button.edit").click()
        for text in ("Write the inspector docs", "docs/inspector.md"):
            prompt = wait(ada, expected_conditions.alert_is_present())
            prompt.send_keys(text)
            prompt.accept()
        wait(bob, expected_conditions.text_to_be_present_in_element((By.ID, f"card-{card_id}"), "inspector docs"))

        # Move with the keyboard fallback (the select), seen in bob's "doing" column.
        select = card_in(ada, "todo", "inspector docs").find_element(By.CSS_SELECTOR, "select.move")
        Select(select).select_by_visible_text("doing")
        card_in(bob, "doing", "inspector docs")

        # Drag and drop (HTML5 events dispatched as a user's drag would), to "done".
        ada.execute_script(
            """
            const card = document.getElementById(arguments[0]);
            const zone = document.getElementById("column-done");
            const data = new DataTransfer();
            card.dispatchEvent(new DragEvent("dragstart", {dataTransfer: data, bubbles: true}));
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
            """,
            f"card-{card_id}",
        )
        card_in(bob, "done", "inspector docs")

        for name, size in (("board-1280x800", (1280, 800)), ("board-390x844", (390, 844))):
            ada.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": size[0] < 600},
            )
            wait(ada, lambda d, width=size[0]: d.execute_script("return window.innerWidth") == width)
            overflow = ada.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"horizontal scroll of {overflow} px at {size}"
            ada.save_screenshot(str(shots / f"{name}.png"))
            assert (shots / f"{name}.png").stat().st_size > 0
        ada.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        # Delete (a confirm), seen in bob's page.
        card_in(ada, "done", "inspector docs").find_element(By.CSS_SELECTOR, "button.delete").click()
        wait(ada, expected_conditions.alert_is_present()).accept()
        wait(bob, expected_conditions.invisibility_of_element_located((By.ID, f"card-{card_id}")))
        assert bob.find_elements(By.ID, f"card-{card_id}") == []
    finally:
        ada.quit()
        bob.quit()


def test_chat_across_two_sessions_and_a_server_restart(server: BoardServer, tmp_path: Path) -> None:
    base = base_of(server)
    ada, bob = browser(tmp_path / "ada"), browser(tmp_path / "bob")
    try:
        sign_in(ada, base, "ada")
        sign_in(bob, base, "bob")
        live(ada)
        live(bob)
        wait(ada, expected_conditions.text_to_be_present_in_element((By.ID, "presence"), "ada, bob"))

        bob.find_element(By.ID, "chat-input").send_keys("before the restart")
        bob.find_element(By.CSS_SELECTOR, "#chat-form button").click()
        wait(ada, expected_conditions.text_to_be_present_in_element((By.ID, "messages"), "before the restart"))

        server.stop()
        wait(ada, lambda d: d.execute_script("return chat.readyState") != 1)
        server.start()  # same port, same data directory: same session key, same sessions
        wait(ada, lambda d: d.execute_script("return chat.readyState") == 1, timeout=20)
        wait(bob, lambda d: d.execute_script("return chat.readyState") == 1, timeout=20)

        ada.find_element(By.ID, "chat-input").send_keys("after the restart")
        ada.find_element(By.CSS_SELECTOR, "#chat-form button").click()
        wait(bob, expected_conditions.text_to_be_present_in_element((By.ID, "messages"), "after the restart"))
        assert bob.find_element(By.ID, "whoami").text == "bob"  # nobody was signed out
    finally:
        ada.quit()
        bob.quit()


def test_export_cancelled_midway_runs_the_jobs_finally(server: BoardServer, tmp_path: Path) -> None:
    base = base_of(server)
    ada = browser(tmp_path / "ada")
    try:
        sign_in(ada, base, "ada")
        live(ada)
        for title in ("one", "two", "three", "four", "five", "six"):
            ada.find_element(By.ID, "title").send_keys(title)
            ada.find_element(By.ID, "add").click()
            card_in(ada, "todo", title)
        ada.find_element(By.ID, "export").click()
        wait(ada, lambda d: int(d.find_element(By.ID, "export-progress").get_attribute("value")) > 0)
        ada.find_element(By.ID, "export-cancel").click()
        wait(ada, expected_conditions.text_to_be_present_in_element((By.ID, "export-state"), "cancelled"))
        progress = int(ada.find_element(By.ID, "export-progress").get_attribute("value"))
        assert 0 < progress < 100
        assert server.app is not None
        [job] = server.app.state.jobs.values()
        assert job.state == "cancelled"
        assert job.finally_ran
        assert ada.find_element(By.ID, "export-link").get_attribute("hidden") is not None
    finally:
        ada.quit()


def test_inspector_shows_a_search_in_flight_then_client_disconnected(
    server: BoardServer, tmp_path: Path, shots: Path
) -> None:
    base = base_of(server)
    ada, bob = browser(tmp_path / "ada"), browser(tmp_path / "bob")  # ada watches, bob searches
    try:
        sign_in(ada, base, "ada")
        sign_in(bob, base, "bob")
        ada.set_window_size(1280, 800)
        ada.get(base + "/_triolette/")
        wait(ada, expected_conditions.text_to_be_present_in_element((By.ID, "conn"), "live"))

        board = bob.current_window_handle
        bob.switch_to.new_window("tab")
        bob.get(base + "/")
        bob.find_element(By.ID, "search-q").send_keys("docs")
        delay = bob.find_element(By.ID, "search-delay")
        delay.clear()
        delay.send_keys("5")
        bob.find_element(By.ID, "search-go").click()
        row = "//table[@id='in-flight']//tr[contains(., '/search')]"
        # within the search's 5 s: the row, with the search's tasks and its phase
        row_text(ada, row, "/search", "search service: titles", "in handler")
        ada.save_screenshot(str(shots / "inspector-in-flight-1280x800.png"))

        bob.close()  # the tab goes during the search: its request ends with "client disconnected"
        bob.switch_to.window(board)
        ended = "//table[@id='ended']//tr[contains(., '/search')]"
        row_text(ada, ended, "/search", "client disconnected", timeout=10)
        ada.save_screenshot(str(shots / "inspector-ended-1280x800.png"))
    finally:
        ada.quit()
        bob.quit()
