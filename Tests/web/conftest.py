"""Fixtures for the dashboard's browser tests: the real orchestra-hub serving web/ (the copy the
build puts beside it), real agents (the examples in C, Python and Node, started as in
Tests/hub), and headless Chromium from Debian driven by selenium. Screenshots go to the test
output folder: $ORC_TEST_OUTPUT, or <build>/test-output/web."""
import importlib.util
import json
import os
import shutil

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# The hub and agent helpers of the hub's acceptance tests (Tests/hub/conftest.py), loaded under
# another name (this file is `conftest` too).
_spec = importlib.util.spec_from_file_location("hub_conftest", os.path.join(HERE, "..", "hub", "conftest.py"))
hubconf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hubconf)
BUILD, Agents, Hub, Web, wait_until = hubconf.BUILD, hubconf.Agents, hubconf.Hub, hubconf.Web, hubconf.wait_until

OUT = os.environ.get("ORC_TEST_OUTPUT", os.path.join(BUILD, "test-output", "web"))


def chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if not browser or not os.access(driver, os.X_OK):
        pytest.fail("Debian's chromium and chromium-driver are required (scripts/bootstrap installs them)")
    return browser, driver


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary, driver_path = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800",
              "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    d.set_script_timeout(30)
    yield d
    d.quit()


class Page:
    """The dashboard of one hub in the shared browser: navigation, waits, screenshots, and the
    browser console checked for errors."""

    def __init__(self, driver, hub, name):
        self.d = driver
        self.hub = hub
        self.name = name
        self.shots = []
        self.allowed_console = []
        os.makedirs(OUT, exist_ok=True)
        self.d.set_window_size(1280, 800)
        self.d.get("about:blank")   # leave the previous test's page (and its reconnection attempts)
        self.d.get_log("browser")   # what it logged

    @property
    def base(self):
        return f"http://127.0.0.1:{self.hub.port}"

    def open(self, hash_=""):
        self.d.get(f"{self.base}/{hash_}")

    def go(self, hash_):
        self.d.execute_script("location.hash = arguments[0]", hash_)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def call(self, script, *args):
        """Runs async JS: `script` is an async function body; returns its value or raises."""
        r = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"(async () => {{ {script} }})().then(v => done({{ok: v === undefined ? null : v}}),"
            " e => done({err: {code: e.code || '', message: e.message || String(e), details: e.details || {}}}));", *args)
        if "err" in r:
            return {"error": r["err"]}
        return r["ok"]

    def find(self, css):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def one(self, css, timeout=20):
        return wait_until(lambda: (self.find(css) or [None])[0], timeout, f"{css} on the page")

    def text(self, css):
        """The rendered text of the first match (read in the page: views redraw their rows)."""
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)

    def attrs(self, css, name):
        return self.js("return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))", css, name)

    def count(self, css):
        return self.js("return document.querySelectorAll(arguments[0]).length", css)

    def wait_text(self, css, pred, timeout=30, what=None):
        return wait_until(lambda: pred(self.text(css)), timeout, what or f"the text of {css}")

    def login(self, user, password):
        self.open()
        self.one("#login-user").send_keys(user)
        self.one("#login-password").send_keys(password)
        self.one("#login-submit").click()
        self.one("#who-user")

    def shot(self, what):
        path = os.path.join(OUT, f"{self.name}-{len(self.shots) + 1:02d}-{what}.png")
        self.d.save_screenshot(path)
        self.shots.append(path)
        return path

    def console_errors(self):
        errors = []
        for e in self.d.get_log("browser"):
            if e["level"] != "SEVERE":
                continue
            if any(a in e["message"] for a in self.allowed_console):
                continue
            errors.append(e["message"])
        return errors


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path, "--alert-agent-offline-s", "2")
    yield h
    h.stop()


@pytest.fixture
def agents(hub, tmp_path):
    a = Agents(hub, tmp_path)
    yield a
    a.stop_all()


@pytest.fixture
def page(browser, hub, request):
    p = Page(browser, hub, request.node.name.removeprefix("test_"))
    yield p
    errors = p.console_errors()
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def add_user(hub, name, role, password=None):
    password = password or f"{name}-password"
    hub.cli("user", "add", name, "--role", role, "--password", password)
    return password


def journal_task(hub, task_id):
    with hub.db() as db:
        r = db.execute("SELECT state, dead, attempt FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return tuple(r) if r else None


def dump(obj):
    return json.dumps(obj, indent=1)
