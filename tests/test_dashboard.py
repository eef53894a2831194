"""The dashboard in a real headless browser (Debian's chromium through selenium's chromedriver).

``jpki-sim serve`` runs as a child process; a pyscard client talks to the card
through pcscd while the browser shows it. A screenshot is saved as a test
artifact (``$JPKI_SIM_ARTIFACTS``, else the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jpki_sim.transport.pcsc import PcscTransport, wait_for_card
from pcsc_harness import PORTS, PcscSession, ServeProcess, pcsc_required, stored_copy

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
VERIFY_1234 = bytes.fromhex("002000800431323334")
APDU_ROWS = "#trace tr.trace-row[data-type='apdu']"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

#: Chromium's flags on a machine without a network (env/machines/python.md)
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1500,1100")


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "chromium and chromium-driver are not installed (tools/setup.sh installs them)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if pcsc_required():
            pytest.fail(f"{missing} (JPKI_SIM_REQUIRE_PCSC is set, so this is a failure)")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _artifact_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("JPKI_SIM_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(what: str, check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except Exception:  # the page is redrawn under us: try again
            got = None
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"the dashboard did not show {what} within {timeout} s")


def _click(browser: Any, selector: str, timeout: float = 15.0) -> None:
    """Click the element ``selector`` finds, finding it again when the page redrew it."""
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        browser.find_element(By.CSS_SELECTOR, selector).click()
        return True

    _wait(f"a clickable {selector}", clicked, timeout)


@pytest.mark.pcsc
def test_dashboard_shows_the_card_blocks_a_pin_and_traces_the_client(
        pcscd_session: PcscSession, jpki_state: Any, tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    reader = pcscd_session.reader_for_port(PORTS[1])
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    (tmp_path / "run").mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    server = ServeProcess([str(card), "--vpcd", f"localhost:{PORTS[1]}", "--json",
                           "--control", "127.0.0.1:0"], env=env)
    try:
        (line,) = server.wait_ready(timeout=30)
        ready = json.loads(line)
        token = Path(ready["token_file"]).read_text().strip()

        # without the token: the explanation, no card
        browser.get(ready["control"])
        assert "Token needed" in browser.page_source

        browser.get(f"{ready['control']}?token={token}")
        _wait("the card panel", lambda: browser.find_elements(By.CSS_SELECTOR,
                                                              "[data-card='0'] [data-pin='auth']"))
        assert "token=" not in browser.current_url  # taken out of the address bar
        _wait("3 of 3 tries", lambda: browser.find_element(
            By.CSS_SELECTOR, "[data-card='0'] [data-pin='auth'] .tries").text == "3/3")
        _wait("the holder", lambda: "番号　花子" in browser.find_element(
            By.CSS_SELECTOR, "[data-card='0']").text)
        _wait("the live stream", lambda: browser.find_element(By.ID, "connection").text == "live")

        # the card's front, drawn from the card's data, fetched with the token
        def front_size() -> Any:
            img = browser.find_element(By.CSS_SELECTOR,
                                       "[data-card='0'] img[data-role='face-image']")
            return browser.execute_script(
                "const i = arguments[0]; return i.complete && i.naturalWidth ? "
                "[i.naturalWidth, i.naturalHeight] : null", img)

        assert _wait("the card's front", front_size, timeout=30) == [1270, 828]

        # a PC/SC client's APDUs appear in the live trace
        with PcscTransport(reader) as t:
            assert t.transmit(SELECT_JPKI) == b"\x90\x00"
            assert t.transmit(SELECT_AUTH_PIN) == b"\x90\x00"

            def traced() -> bool:
                rows = browser.find_elements(By.CSS_SELECTOR, APDU_ROWS)
                return any(r.get_attribute("data-command") == SELECT_AUTH_PIN.hex().upper()
                           for r in rows)

            _wait("the client's SELECT in the trace", traced)

            # a click on "block" makes the next VERIFY answer 6984
            _click(browser, "[data-card='0'] [data-pin='auth'] [data-action='block']")
            _wait("the blocked counter", lambda: browser.find_element(
                By.CSS_SELECTOR, "[data-card='0'] [data-pin='auth'] .tries").text == "0/3")
            assert t.transmit(VERIFY_1234) == bytes.fromhex("6984")

            def verify_traced() -> bool:
                rows = browser.find_elements(By.CSS_SELECTOR, APDU_ROWS)
                return any(r.get_attribute("data-command") == "00200080042A2A2A2A"
                           and r.get_attribute("data-sw") == "6984" for r in rows)

            _wait("the VERIFY (PIN masked) answered 6984 in the trace", verify_traced)
        assert "31323334" not in browser.page_source  # the PIN never reaches the page

        # remove from the dashboard: the reader empties; insert brings it back
        _click(browser, "[data-card='0'] [data-action='remove']")
        assert wait_for_card(reader, present=False, timeout=10)
        _wait("the removed card", lambda: browser.find_element(
            By.CSS_SELECTOR, "[data-card='0'] [data-role='presence']").text == "removed")
        _click(browser, "[data-card='0'] [data-action='insert']")
        assert wait_for_card(reader, present=True, timeout=10)
        _wait("the card back", lambda: browser.find_element(
            By.CSS_SELECTOR, "[data-card='0'] [data-role='presence']").text == "in the reader")

        shot = _artifact_dir(tmp_path) / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        assert server.terminate() == 0
    finally:
        server.kill()
    assert wait_for_card(reader, present=False, timeout=5)
