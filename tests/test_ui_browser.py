"""The admin UI in a real browser (Debian's Chromium) against the real `dheera_ai` command.

One operator's afternoon: log in, create a key and call with it through the OpenAI SDK, block it
and watch the SDK be refused, find the call in the logs and on the dashboard, stream a reply in
the playground, manage a team, check the models, be refused a forged form, log out. Each page's
screenshot is written to docs/ui/ (the README shows them).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import openai
import pytest
import yaml

from proxy_app.store.sqlite import SQLiteStore
from proxy_app.virtual_keys import hash_key
from tests.support.browser import LAPTOP, PHONE, chromium
from tests.support.fake_upstream import FakeUpstream, chat_chunks
from tests.support.process import GatewayProcess
from tests.support.spend_rows import history

MASTER = "sk-ui-master-key-0123456789"
UPSTREAM_SECRET = "sk-upstream-secret-never-shown"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "ui"
WAIT = 20.0


@pytest.fixture(scope="module")
def upstream():
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui-gateway")
    config = {
        "model_list": [
            {"model_name": "gpt-4o-mini", "dheera_ai_params": {"model": "openai/gpt-4o-mini",
                                                               "api_base": upstream.url + "/v1",
                                                               "api_key": UPSTREAM_SECRET, "rpm": 600}},
            {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}},
        ],
        "general_settings": {"master_key": MASTER, "database_url": f"sqlite:///{folder}/state.sqlite3",
                             "spend_flush_seconds": 0.1},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = GatewayProcess("--config", str(path), "--workers", "1")
    process.store_path = str(folder / "state.sqlite3")
    try:
        process.wait_ready(60)
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


class Page:
    """The few moves a person makes: open, fill, click, read; waits instead of sleeps."""

    def __init__(self, driver, base):
        self.driver, self.base = driver, base

    def open(self, path):
        self.driver.get(self.base + path)

    def find(self, css):
        return self.driver.find_element("css selector", css)

    def all(self, css):
        return self.driver.find_elements("css selector", css)

    def fill(self, fields: dict):
        for name, value in fields.items():
            element = self.find(f"[name='{name}']")
            element.clear()
            element.send_keys(value)

    def click(self, css):
        self.find(css).click()

    def go(self, css):
        """Click something that loads another page, and wait until that page is there."""
        old = self.find("html")
        self.find(css).click()
        self.until(lambda: _gone(old), f"the page after clicking {css}")

    def text(self):
        return self.find("body").text

    def source(self):
        return self.driver.page_source

    def until(self, check, what, timeout=WAIT, reload=False):
        """Wait until `check()` is truthy (reloading the page between tries if asked); its value."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        deadline = time.time() + timeout
        while True:
            try:
                value = check()
            except (NoSuchElementException, StaleElementReferenceException):  # a page still loading
                value = None
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; page says:\n{self.text()[:2000]}")
            time.sleep(0.1)
            if reload:
                self.driver.refresh()

    def shot(self, name, size=LAPTOP):
        """A full-page screenshot at a laptop (or phone) width into docs/ui/."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        phone = size == PHONE

        def emulate(height):
            # A real phone viewport (a desktop window cannot be made that narrow).
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": size[0], "height": height, "deviceScaleFactor": 1, "mobile": phone})
        emulate(size[1])
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        emulate(max(size[1], min(height, 2600)))
        self.driver.save_screenshot(str(SHOTS / f"{name}.png"))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _gone(element) -> bool:
    from selenium.common.exceptions import WebDriverException

    try:
        return not element.tag_name  # reading it fails once the page it was on has gone
    except WebDriverException:  # stale element; newer Chromium: "Node ... does not belong to the document"
        return True


def log_in(page, key):
    page.open("/ui/login")
    page.fill({"api_key": key})
    page.go("button[type=submit]")


def sdk(gateway, key):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_an_operator_manages_the_gateway_from_the_browser(gateway, upstream, browser):
    page = Page(browser, gateway.url)

    # Logging in: a page of the UI sends a stranger to the login form; a wrong key is refused.
    page.open("/ui/keys")
    assert browser.current_url.startswith(gateway.url + "/ui/login")
    password = page.find("input[name=api_key]")
    assert password.get_attribute("type") == "password"
    assert page.find("label[for=api_key]").text == "API key"
    page.shot("login")
    log_in(page, "sk-not-the-master-key")
    assert "That key was not accepted" in page.text()
    log_in(page, MASTER)
    page.until(lambda: page.find("h1").text == "Dashboard", "the dashboard")
    cookie = browser.get_cookie("dheera_ai_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and MASTER not in cookie["value"]

    # A key made in the form is shown once, then works with the OpenAI SDK.
    page.open("/ui/keys")
    page.go("a[href='/ui/keys/new']")
    page.fill({"key_alias": "search-service", "models": "gpt-4o-mini, demo", "max_budget": "25",
               "rpm_limit": "120", "tags": "search, prod", "metadata": '{"owner": "search-team"}'})
    page.go("#key-form button[type=submit]")
    key = page.until(lambda: page.all("#new-key") and page.find("#new-key").get_attribute("value"), "the new key")
    assert key.startswith("sk-")
    page.click("[data-copy]")
    page.until(lambda: page.find("#copied").text == "Copied.", "the copy confirmation")
    page.shot("key-created")
    answer = sdk(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
    cost = float(answer.headers["x-dheera-ai-response-cost"])
    assert answer.parse().choices[0].message.content == "Hello from the fake upstream." and cost > 0

    # The list never shows the key again, but shows its spend once the row is stored.
    page.open("/ui/keys")
    row = page.find("#keys-table tbody tr")
    assert "search-service" in row.text and "gpt-4o-mini" in row.text and "120 rpm" in row.text
    assert key not in page.source()
    spent = f"${cost:.6f}".rstrip("0") + " of $25.00"
    page.until(lambda: spent in page.find("#keys-table tbody tr").text, "the key's spend", reload=True)

    # The call is in the logs, with the key's alias; its detail page shows usage, redacted metadata.
    page.open("/ui/logs")
    first = page.until(lambda: page.all("#logs-table tbody tr a") and page.find("#logs-table tbody tr"),
                       "the call in the logs", reload=True)
    assert "gpt-4o-mini" in first.text and "search-service" in first.text and "200" in first.text
    page.go("#logs-table tbody tr a")
    assert "Prompt tokens" in page.text() and "search" in page.text()
    assert key not in page.source() and UPSTREAM_SECRET not in page.source()
    page.shot("log-row")

    # The dashboard counts it: one request, its cost, the key on top.
    page.open("/ui/?window=24h")
    assert page.find("#stat-calls").text == "1"
    assert page.find("#stat-errors").text == "0.0%"
    assert page.find("#stat-spend").text == f"${cost:.6f}".rstrip("0")
    assert "search-service" in page.find("#top-key").text and "gpt-4o-mini" in page.find("#top-model").text
    assert "search" in page.find("#top-tag").text

    # Blocked from the list: the SDK is refused at once; unblocked, it works again.
    page.open("/ui/keys")
    page.go("#keys-table tbody tr form button")
    page.until(lambda: "blocked" in page.find("#keys-table tbody tr").text, "the blocked badge")
    with pytest.raises(openai.AuthenticationError, match="blocked"):
        sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    page.go("#keys-table tbody tr form button")
    page.until(lambda: "active" in page.find("#keys-table tbody tr").text, "the active badge")
    sdk(gateway, key).chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])

    # The playground streams the reply into the page as it arrives, then shows latency, tokens, cost.
    words = ("Streaming", " into", " the", " page", " word", " by", " word.")
    upstream.stream(chat_chunks(words=words, usage=(12, 7)), event_delay=0.25)
    page.open("/ui/playground")
    page.fill({"api_key": key, "message": "Tell me something"})
    [o for o in page.all("#p-model option") if o.text == "gpt-4o-mini"][0].click()
    page.click("#p-send")
    reply = ".bubble.assistant p"
    partial = page.until(lambda: page.all(reply) and page.find(reply).text, "the first words")
    assert "".join(words).startswith(partial) and partial != "".join(words)  # part of it, before the rest came
    page.until(lambda: page.find(reply).text == "".join(words), "the whole reply")
    page.until(lambda: page.find("#p-cost").text.startswith("$"), "the recorded cost")
    assert page.find("#p-tokens").text == "12 in · 7 out"
    assert page.find("#p-latency").text.endswith(" ms") and page.find("#p-ttft").text.endswith(" ms")
    page.shot("playground")

    # Teams and users: a team with a budget, a user made with a key, added as a member.
    page.open("/ui/teams/new")
    page.fill({"team_id": "search", "team_alias": "Search", "models": "gpt-4o-mini", "max_budget": "500",
               "budget_duration": "30d", "tpm_limit": "200000"})
    page.go("#team-form button[type=submit]")
    page.until(lambda: page.find("h1").text == "Team Search", "the team page")
    page.open("/ui/users/new")
    page.fill({"user_id": "alice", "user_email": "alice@example.com", "max_budget": "50"})
    page.go("#user-form button[type=submit]")
    user_key = page.until(lambda: page.all("#new-key") and page.find("#new-key").get_attribute("value"),
                          "the user's key")
    page.open("/ui/users")
    assert "alice@example.com" in page.text() and user_key not in page.source()
    page.open("/ui/teams/search/edit")
    page.fill({"member_user_id": "alice"})
    page.go(".add-member button")
    page.until(lambda: "alice" in page.find("#members-table").text, "alice among the members")
    page.open("/ui/teams")
    assert "Search" in page.text() and "$500" in page.text()

    # Models: deployments without secrets, a live health check on demand.
    page.open("/ui/models")
    assert "gpt-4o-mini" in page.text() and "not checked" in page.text()
    page.go("#run-health")
    page.until(lambda: page.text().count("healthy") >= 2, "the health results")
    assert UPSTREAM_SECRET not in page.source() and "unhealthy" not in page.text()
    page.shot("models")

    # Some history for the dashboard's chart, then the dashboard and keys at laptop and phone widths.
    for i in range(6):
        sdk(gateway, user_key if i % 2 else key).chat.completions.create(
            model="gpt-4o-mini" if i % 3 else "demo", messages=[{"role": "user", "content": "Hi " * (i + 1)}])
    page.open("/ui/?window=24h")
    page.until(lambda: page.find("#stat-calls").text == "9", "every call counted", reload=True)
    # Then a month of earlier traffic, written to the store as the gateway writes it, for the pictures.
    seeded = SQLiteStore(gateway.store_path)
    owners = [{"key_hash": hash_key(key), "key_alias": "search-service", "user_id": None, "team_id": "search",
               "tags": ["search", "prod"]},
              {"key_hash": hash_key(user_key), "key_alias": None, "user_id": "alice", "team_id": "search",
               "tags": ["notebooks"]}]
    seeded.record_spend(history(owners, days=29, now=time.time()))
    seeded.close()
    page.open("/ui/keys")
    page.shot("keys")
    page.shot("keys-phone", PHONE)
    for path, name in (("/ui/users", "users"), ("/ui/teams", "teams"), ("/ui/teams/search/edit", "team"),
                       ("/ui/logs", "logs")):
        page.open(path)
        page.shot(name)
    page.open("/ui/?window=30d")
    page.shot("dashboard")
    page.shot("dashboard-phone", PHONE)

    # A forged form (wrong CSRF token) changes nothing; the page says why.
    page.open("/ui/keys")
    browser.execute_script("document.querySelector('#keys-table tbody tr form input[name=csrf_token]').value = "
                           "arguments[0]", uuid.uuid4().hex)
    page.go("#keys-table tbody tr form button")
    assert "did not come from this gateway's UI" in page.text()
    sdk(gateway, key).chat.completions.create(model="demo", messages=[{"role": "user", "content": "still works"}])

    # Logging out ends the session: pages send the browser back to the login form.
    page.open("/ui/")
    page.go(".logout button")
    page.until(lambda: "/ui/login" in browser.current_url, "the login page")
    page.open("/ui/keys")
    assert "/ui/login" in browser.current_url and page.all("input[name=api_key]")


def test_keyboard_alone_logs_in_and_reaches_every_page(gateway, browser):
    from selenium.webdriver.common.keys import Keys

    browser.delete_all_cookies()
    page = Page(browser, gateway.url)
    page.open("/ui/login")
    active = browser.switch_to.active_element
    assert active.get_attribute("name") == "api_key"  # focus starts in the key field
    active.send_keys(MASTER, Keys.ENTER)
    page.until(lambda: page.find("h1").text == "Dashboard", "the dashboard")
    body = page.find("body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    reached = []
    for _ in range(12):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(browser.switch_to.active_element.text)
    assert {"Keys", "Users", "Teams", "Models", "Logs", "Playground"} <= set(reached)
    # Every field of every form has a label naming it (screen readers read it out).
    for path in ("/ui/keys", "/ui/keys/new", "/ui/users/new", "/ui/teams/new", "/ui/logs", "/ui/playground"):
        page.open(path)
        fields = [e for e in page.all("input, select, textarea") if e.get_attribute("type") != "hidden"]
        assert fields, path
        for element in fields:
            assert page.all(f"label[for='{element.get_attribute('id')}']"), f"{path}: {element.get_attribute('name')}"
