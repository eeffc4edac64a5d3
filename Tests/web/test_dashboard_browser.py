"""The dashboard in a real browser (headless Chromium, selenium) against the real hub and real
agents: every scenario of the issue's acceptance, with screenshots of each view in the test
output folder and no error in the browser console. The hub's refusals are checked through the
page's own connection, beside the buttons the page leaves out."""
import asyncio
import json
import time

from conftest import Web, add_user, journal_task, wait_until

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def lines(n, prefix="line"):
    return "".join(f"{prefix} {i}\n" for i in range(1, n + 1))


def key(hub, name="k1"):
    return hub.add_key(name)


def terminal_text(page):
    return page.js("const v = window.orchestra.view; return v && v.terminal ? v.terminal.text() : null")


def no_xss(page):
    assert page.js("return window.__xss === undefined"), "a payload ran"
    assert not page.find("#view img"), "a payload became an element"


async def test_login_and_a_wrong_password_is_refused(page, hub, agents):
    hub.start()
    pw = add_user(hub, "alice", "user")
    # Chromium logs the refused login's HTTP 401 itself (a network message, not the page's).
    page.allowed_console.append("/auth/login - Failed to load resource: the server responded with a status of 401")
    page.open()
    page.one("#login-user").send_keys("alice")
    page.one("#login-password").send_keys("not the password")
    page.shot("login")
    page.one("#login-submit").click()
    page.wait_text("#login-error", lambda t: "Wrong user name or password" in t)
    assert not page.find("#who-user")
    page.shot("login-refused")
    page.one("#login-password").clear()
    page.one("#login-password").send_keys(pw)
    page.one("#login-submit").click()
    assert page.one("#who-user").text == "alice" and page.text("#who-role") == "user"
    assert [a.text for a in page.find("nav a")] == ["Agents", "Tasks", "Submit", "Health"]
    # The token is in this tab's sessionStorage, never in a cookie; a reload keeps the session.
    assert page.js("return JSON.parse(sessionStorage.getItem('orchestra.auth')).user") == "alice"
    assert page.js("return document.cookie") == ""
    page.d.refresh()
    assert page.one("#who-user").text == "alice"
    page.one("#logout").click()
    page.one("#login-user")
    assert page.js("return sessionStorage.getItem('orchestra.auth')") is None
    assert hub.events("auth.login_failed") and hub.events("auth.login")


def marker(page):
    """Marks the document: still marked later means the page was never reloaded."""
    page.js("window.__marker = 42")


def still_marked(page):
    return page.js("return window.__marker") == 42


def agent_status(page, agent_id):
    return page.js("const r = [...document.querySelectorAll('#agents-body tr')].find(r => r.dataset.agent === arguments[0]);"
                   "return r ? r.querySelector('td .badge').textContent : null", agent_id)


async def test_agents_appear_and_disappear_live(page, hub, agents):
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "root", "admin")
    page.login("root", pw)
    page.go("#/agents")
    page.one("#agents-empty")
    marker(page)
    for lang in ("c", "python", "node"):
        agents.start(lang, f"agent-{lang}", "k1", secret)
    for lang in ("c", "python", "node"):
        wait_until(lambda: agent_status(page, f"agent-{lang}") == "online", 30, f"agent-{lang} online on the page")
    rows = dict(zip(page.attrs("#agents-body tr", "data-agent"),
                    page.js("return [...document.querySelectorAll('#agents-body tr')].map(r => r.innerText)")))
    assert "shell" in rows["agent-python"] and "0 / 4" in rows["agent-python"]
    page.shot("agents")
    agents.kill9("agent-python")
    wait_until(lambda: agent_status(page, "agent-python") == "offline", 30, "agent-python offline on the page")
    assert agent_status(page, "agent-c") == "online" and agent_status(page, "agent-node") == "online"
    assert still_marked(page)
    page.shot("agent-gone")


async def test_an_alert_is_raised_and_resolved(page, hub, agents):
    hub.start()   # --alert-agent-offline-s 2
    secret = key(hub)
    pw = add_user(hub, "vera", "viewer")
    agents.start("python", "flaky", "k1", secret)
    page.login("vera", pw)
    wait_until(lambda: agent_status(page, "flaky") == "online", 30, "flaky online")
    agents.kill9("flaky")
    banner = page.one(".banner.alert", 30)
    assert "agent.offline" in banner.text and "flaky" in banner.text
    page.go("#/health")
    page.wait_text("#alerts-list", lambda t: "flaky" in t)
    page.one("#charts svg")
    page.shot("alert-raised")
    agents.start("python", "flaky", "k1", secret)
    wait_until(lambda: not page.find(".banner.alert"), 30, "the alert banner to go")
    page.wait_text("#alerts-list", lambda t: "None" in t)
    page.shot("alert-resolved")
    assert [e["id"] for e in hub.events("alert.resolved")] == ["agent.offline:flaky"]


async def test_submit_a_task_and_see_its_output_in_order(page, hub, agents):
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "alice", "user")
    agents.start("python", "worker", "k1", secret)
    page.login("alice", pw)
    page.go("#/submit")
    params = page.one("#submit-parameters")
    params.clear()
    params.send_keys('{"command": ')
    page.wait_text("#submit-parameters-error", lambda t: t.startswith("Parameters:"))
    assert page.one("#submit-button").get_attribute("disabled") is not None
    page.shot("submit-invalid")
    params.clear()
    params.send_keys(json.dumps({"command": "for i in $(seq 1 30); do echo line $i; done; printf '\\033[31mred\\033[0m\\n'; echo oops >&2"}))
    page.wait_text("#submit-parameters-error", lambda t: t == "")
    page.shot("submit")
    page.one("#submit-button").click()
    wait_until(lambda: "#/task/" in page.d.current_url, 20, "the task's page")
    task_id = page.d.current_url.split("#/task/")[1]
    page.wait_text("#task-state", lambda t: t == "succeeded", 60)
    wait_until(lambda: "oops" in (terminal_text(page) or ""), 20, "the output")
    out = terminal_text(page)
    stdout = [l for l in out.splitlines() if l.startswith("line ")]
    assert stdout == [f"line {i}" for i in range(1, 31)], out
    assert out.count("oops") == 1 and "red" in out
    assert page.text(".term .line.stderr") == "oops"
    assert page.text(".term .fg-c1") == "red"
    assert json.loads(page.text("#task-result")) == {"exitCode": 0}
    assert "worker" in page.text("#attempts-body") and "succeeded" in page.text("#attempts-body")
    page.shot("task-detail")
    # The list finds it by id and by text in its parameters, and under its state.
    page.go("#/tasks")
    page.one("#tasks-body tr")
    page.one("#task-search").send_keys(task_id)
    wait_until(lambda: page.attrs("#tasks-body tr", "data-task") == [task_id], 20, "the search by id")
    page.one("#task-search").clear()
    page.one("#task-search").send_keys("SEQ 1 30")
    wait_until(lambda: page.attrs("#tasks-body tr", "data-task") == [task_id], 20, "the search by text")
    page.one('[data-filter="failed"]').click()
    page.one("#task-search").clear()
    page.one("#task-search").send_keys(" ")
    wait_until(lambda: page.count("#tasks-body tr") == 0, 20, "no failed task")
    page.one('[data-filter="succeeded"]').click()
    wait_until(lambda: page.attrs("#tasks-body tr", "data-task") == [task_id], 20, "the succeeded filter")
    page.shot("tasks")


async def watch_session(hub, user, session):
    web = await Web.open(hub, hub.token(user))
    await web.request("session.join", {"sessionId": session})
    return web


def streamed(web, task_id):
    return "".join(e["payload"]["data"] for e in web.of("task.stream", task_id))


async def test_a_running_task_opened_late_shows_the_earlier_output_first(page, hub, agents):
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "alice", "user")
    agents.start("python", "worker", "k1", secret)
    web = await watch_session(hub, "alice", "late")
    tid = await web.submit("for i in $(seq 1 40); do echo line $i; sleep 0.1; done", sessionId="late", taskId="late-task")
    await web.wait(lambda: "line 10\n" in streamed(web, tid), 30, "ten lines streamed")
    page.login("alice", pw)
    page.go(f"#/task/{tid}")
    wait_until(lambda: (terminal_text(page) or "").startswith("line 1\nline 2\n"), 20, "the earlier output")
    first = terminal_text(page)
    assert "line 10\n" in first and first == lines(first.count("\n"))
    page.shot("task-late")
    page.wait_text("#task-state", lambda t: t == "succeeded", 60)
    wait_until(lambda: terminal_text(page) == lines(40), 20, "all 40 lines, in order, once")
    await web.result(tid)
    assert streamed(web, tid) == lines(40)
    await web.close()


async def test_the_page_resumes_after_a_hub_restart_with_no_gap_and_no_duplicate(page, hub, agents):
    # The browser logs the refused reconnection attempts while the hub is down.
    page.allowed_console.append("WebSocket connection to")
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "alice", "user")
    agents.start("python", "worker", "k1", secret)
    page.login("alice", pw)
    page.go("#/submit")
    params = page.one("#submit-parameters")
    params.clear()
    params.send_keys(json.dumps({"command": "for i in $(seq 1 60); do echo line $i; sleep 0.1; done"}))
    page.one("#submit-button").click()
    wait_until(lambda: "line 10\n" in (terminal_text(page) or ""), 30, "ten lines before the restart")
    marker(page)
    hub.stop()
    page.one(".banner.warn", 20)
    assert "Reconnecting" in page.text(".banner.warn")
    page.shot("reconnecting")
    time.sleep(1)
    hub.start()
    wait_until(lambda: not page.find(".banner.warn"), 30, "the reconnecting banner to go")
    page.wait_text("#task-state", lambda t: t == "succeeded", 90)
    wait_until(lambda: terminal_text(page) == lines(60), 30, "every line once, in order")
    assert still_marked(page)
    page.shot("resumed")


async def test_a_viewer_cannot_submit_or_cancel(page, hub, agents):
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "vera", "viewer")
    agents.start("python", "worker", "k1", secret)
    web = await watch_session(hub, "alice", "s-long")
    tid = await web.submit("echo started; sleep 60", sessionId="s-long", taskId="long-task")
    await web.wait(lambda: web.of("task.stream", tid), 30, "the task running")
    page.login("vera", pw)
    assert [a.text for a in page.find("nav a")] == ["Agents", "Tasks", "Health"]
    page.go(f"#/task/{tid}")
    wait_until(lambda: "started" in (terminal_text(page) or ""), 30, "the viewer watching the output")
    page.wait_text("#task-state", lambda t: t == "running")
    assert not page.find("#task-cancel") and not page.find("#worker-input")
    page.shot("viewer-task")
    page.go("#/submit")
    page.one("#not-offered")
    assert not page.find("#submit-button")
    # The hub refuses what the page does not offer.
    r = page.call("return await window.orchestra.hub.request('task.cancel', {taskId: arguments[0]})", tid)
    assert r["error"]["code"] == "AUTH_001" and r["error"]["details"]["rule"] == "role.control"
    r = page.call("return await window.orchestra.hub.request('task.submit', {type: 'shell', parameters: {command: 'id'}})")
    assert r["error"]["code"] == "AUTH_001" and r["error"]["details"]["rule"] == "role.submit"
    r = page.call("return await window.orchestra.hub.request('dead.list', {})")
    assert r["error"]["details"]["rule"] == "role.admin"
    assert (await web.request("task.get", {"taskId": tid}))["payload"]["state"] == "running"
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
    await web.request("task.cancel", {"taskId": tid})
    await web.close()


async def test_xss_payloads_in_output_parameters_and_agent_names_stay_inert(page, hub, agents):
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "alice", "user")
    evil_agent = 'x<img src=x onerror="window.__xss=3">'
    agents.start("python", evil_agent, "k1", secret)
    web = await watch_session(hub, "alice", "s-xss")
    command = "printf '%s\\n' '" + XSS + "'"
    tid = await web.submit(command, sessionId="s-xss", taskId="xss-task", type='<b onmouseover="window.__xss=4">t</b>',
                           parameters={"command": command, "note": XSS})
    await web.result(tid)
    page.login("alice", pw)
    wait_until(lambda: agent_status(page, evil_agent) == "online", 30, "the agent with a payload in its id")
    assert evil_agent in page.text("#agents-body")
    no_xss(page)
    page.shot("xss-agents")
    page.go("#/tasks")
    wait_until(lambda: '<b onmouseover="window.__xss=4">t</b>' in page.text("#tasks-body"), 20, "the type shown as text")
    no_xss(page)
    page.go(f"#/task/{tid}")
    wait_until(lambda: XSS in (terminal_text(page) or ""), 20, "the output")
    assert XSS in page.text(".term") and "<script>window.__xss=2</script>" in page.text("#task-spec")
    assert evil_agent in page.text("#attempts-body")
    no_xss(page)
    assert not page.find("script:not([type=module])")
    page.shot("xss-task")
    await web.close()


async def test_an_admin_requeues_a_dead_letter(page, hub, agents, tmp_path):
    hub.flags += ["--max-attempts", "1"]
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "root", "admin")
    flag = tmp_path / "go"
    agents.start("python", "first", "k1", secret)
    web = await watch_session(hub, "alice", "s-dead")
    tid = await web.submit(f"if [ -e {flag} ]; then echo second time lucky; else echo waiting; sleep 60; fi",
                           sessionId="s-dead", taskId="dead-task")
    await web.wait(lambda: web.of("task.stream", tid), 30, "the first attempt running")
    agents.kill9("first")   # the only attempt is lost: a dead letter
    wait_until(lambda: journal_task(hub, tid) and journal_task(hub, tid)[1] == 1, 30, "the task in the dead-letter list")
    page.login("root", pw)
    assert "Dead letters" in [a.text for a in page.find("nav a")]
    page.go("#/dead")
    page.one(f'#dead-body tr[data-task="{tid}"]')
    assert "1 / 1" in page.text(f'#dead-body tr[data-task="{tid}"]')
    page.shot("dead-letters")
    flag.write_text("")
    agents.start("python", "second", "k1", secret)
    page.one(f'#dead-body tr[data-task="{tid}"] button.requeue').click()
    page.wait_text(".banner.ok", lambda t: f"Requeued {tid}" in t)
    wait_until(lambda: not page.find(f'#dead-body tr[data-task="{tid}"]'), 20, "the row to leave the list")
    results = await web.wait(lambda: len(web.of("task.result", tid)) == 2 and web.of("task.result", tid), 60, "the second result")
    assert not results[0]["payload"]["success"] and results[1]["payload"]["success"]
    assert "second time lucky" in streamed(web, tid)
    assert journal_task(hub, tid)[:2] == ("succeeded", 0)
    assert [e["taskId"] for e in hub.events("task.requeued") if e.get("by") == "root"] == [tid]
    await web.close()


async def test_every_view_at_desktop_and_phone_width_and_by_keyboard(page, hub, agents):
    hub.start()
    secret = key(hub)
    pw = add_user(hub, "root", "admin")
    agents.start("python", "worker", "k1", secret)
    web = await watch_session(hub, "root", "s-views")
    tid = await web.submit("echo hello", sessionId="s-views", taskId="view-task")
    await web.result(tid)
    page.login("root", pw)
    for width, height, label in ((1280, 800, "desktop"), (390, 844, "phone")):
        page.d.set_window_size(width, height)
        for name, ready in (("agents", "#agents-body tr"), ("tasks", "#tasks-body tr"), (f"task/{tid}", "#task-state"),
                            ("submit", "#submit-button"), ("dead", "#dead-empty"), ("health", "#charts svg")):
            page.go(f"#/{name}")
            page.one(ready)
            # Nothing wider than the window: tables scroll inside their own box.
            assert page.js("return document.documentElement.scrollWidth <= window.innerWidth + 1"), (label, name)
            page.shot(f"{label}-{name.split('/')[0]}")
    page.d.set_window_size(1280, 800)
    # Every control is reachable with the keyboard: Tab goes through the nav and the form.
    page.go("#/submit")
    page.one("#submit-button")
    from selenium.webdriver.common.keys import Keys
    page.js("document.activeElement.blur(); window.scrollTo(0, 0)")
    reached = set()
    body = page.find("body")[0]
    for _ in range(25):
        body.send_keys(Keys.TAB) if not reached else page.d.switch_to.active_element.send_keys(Keys.TAB)
        reached.add(page.js("const e = document.activeElement; return e.id || e.getAttribute('data-view') || e.textContent"))
    assert {"agents", "tasks", "submit", "dead", "health", "logout", "submit-type", "submit-parameters", "submit-button"} <= reached, reached
    await web.close()
