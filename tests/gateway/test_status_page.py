"""The gateway's status page (``GET /``): its login and cookie over plain HTTP, the launcher
sessions it reads, and the page itself in headless Chromium (Debian's ``chromium``, which
``scripts/test.sh`` installs) driven over the DevTools protocol: it logs in through its
form, shows the counts, lists and charts, and follows jobs live from the event stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import websockets
from support.driving import Drive
from support.waiting import until

from balsam_mq.domain import Actor, Change, JobState, Session, Site as SiteDoc
from balsam_mq.relay import Relay
from balsam_mq.sdk import ApplicationDefinition, BatchJob, Client, Job, Site
from balsam_mq.store import Store

S = JobState
CHROMIUM = shutil.which("chromium")
WAIT_S = 15.0  # a deadline for what the page shows, never a pause


def adder() -> type[ApplicationDefinition]:
    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x: int, y: int = 1) -> int:
            return x + y

    return Adder


async def submit(n: int, start: int = 0) -> list[int]:
    """``n`` new jobs of Adder on "polaris", as the current client."""
    Adder = adder()
    jobs = await Job.objects.bulk_create(
        [Adder.submit(f"add/{i}", x=i, save=False) for i in range(start, start + n)]
    )
    return [j.id for j in jobs if j.id is not None]


# --- the login and the cookie, over plain HTTP ---------------------------------------------


async def test_without_a_token_the_page_is_a_login_form_without_data(
    gateway: str, token: str, http_client: Client
) -> None:
    await Site.objects.create(name="polaris", path="/sites/polaris")
    async with httpx.AsyncClient(base_url=gateway) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<form id="login" method="post" action="login">' in page.text
        assert "polaris" not in page.text and 'id="counts"' not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert (await http.get("/page/sessions")).status_code == 401
        # the page's own files are public (the login form uses the style sheet)
        script = await http.get("/static/status.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await http.get("/static/page.py")).status_code == 404
        assert "create_app" not in (await http.get("/static/..%2Fapp.py")).text


async def test_a_wrong_token_is_refused(gateway: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        refused = await http.post("/login", data={"token": "not-a-token"})
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        assert "The token was refused" in refused.text and 'id="login"' in refused.text
        assert (await http.post("/login", data={"token": "  "})).status_code == 401
        # a saved cookie that no longer holds is forgotten, and the form says why
        stale = await http.get("/", headers={"Cookie": "balsam_token=revoked"})
        assert 'id="login"' in stale.text and "saved token was refused" in stale.text
        assert stale.headers["set-cookie"].startswith('balsam_token="";')
        # a login posted from another site's page is refused whatever the token
        forged = await http.post(
            "/login", data={"token": token}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert forged.status_code == 403 and "set-cookie" not in forged.headers


async def test_login_sets_a_strict_http_only_cookie_and_logout_clears_it(
    gateway: str, token: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        assert (await http.get("/login")).headers["location"] == "/"  # the form is at /
        login = await http.post("/login", data={"token": token})
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert cookie.startswith(f"balsam_token={token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        page = await http.get("/")  # the client keeps the cookie
        assert 'id="counts"' in page.text and "alice" in page.text
        assert (await http.get("/page/sessions")).json()["items"] == []
        logout = await http.post("/logout")
        assert logout.status_code == 303
        assert logout.headers["set-cookie"].startswith('balsam_token="";')
        assert 'id="login"' in (await http.get("/")).text
        # behind a proxy that terminates TLS (uvicorn trusts X-Forwarded-Proto from
        # 127.0.0.1), the cookie is only ever sent over https
        https = await http.post(
            "/login", data={"token": token}, headers={"X-Forwarded-Proto": "https"}
        )
        assert "Secure" in https.headers["set-cookie"]


async def test_sessions_are_those_of_the_callers_sites(
    gateway: str, token: str, http_client: Client, store: Store
) -> None:
    site = await Site.objects.create(name="polaris", path="/sites/polaris")
    assert site.id is not None
    await store.users.create("bob")
    other = await store.sites.create(SiteDoc(name="polaris", path="/sites/bob", owner="bob"))
    assert other.id is not None
    mine = await store.sessions.create(
        Session(site_id=site.id, hostname="nid0001", pid=11),
        nodes=[{"hostname": "nid0001", "cores": 64, "gpus": [0, 1]}],
        running=3,
    )
    await store.sessions.create(Session(site_id=other.id, hostname="bobs-node", pid=12))
    assert mine.id is not None
    await store.sessions.end(mine.id, stop_reason="wall time")
    async with httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        found = (await http.get("/page/sessions")).json()
    (session,) = found["items"]
    assert session["id"] == mine.id and session["site_id"] == site.id
    assert session["hostname"] == "nid0001" and session["state"] == "STOPPED"
    assert (session["nodes"], session["cores"], session["running"]) == (1, 64, 3)
    assert session["stop_reason"] == "wall time"
    ended, now = (datetime.fromisoformat(t) for t in (session["ended_at"], found["now"]))
    assert ended.tzinfo is not None and ended <= now


# --- the page in a browser ------------------------------------------------------------------


class Navigating(Exception):
    """The page went away while it was asked something (a navigation)."""


class Tab:
    """One page of a headless Chromium, over the DevTools protocol (a websocket)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._calls = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []  # uncaught exceptions and error logs of the page

    async def read(self) -> None:
        async for text in self._ws:
            message = json.loads(text)
            if "id" in message:
                self._waiting.pop(message["id"]).set_result(message)
            elif message.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(message["params"]["exceptionDetails"]))
            elif message.get("method") == "Log.entryAdded":
                entry = message["params"]["entry"]
                if entry["level"] == "error":
                    self.errors.append(f"{entry.get('url', '')}: {entry['text']}")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._calls += 1
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._calls] = reply
        await self._ws.send(json.dumps({"id": self._calls, "method": method, "params": params}))
        message = await asyncio.wait_for(reply, WAIT_S)
        if "error" in message:
            error = message["error"].get("message", "")
            if "navigated or closed" in error or "context" in error.lower():
                raise Navigating(f"{method}: {error}")
            raise AssertionError(f"{method}: {message['error']}")
        result: dict[str, Any] = message["result"]
        return result

    async def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll ``expression`` until it is truthy (or fail after WAIT_S); its value."""
        seen: list[Any] = []

        async def holds() -> bool:
            try:
                seen[:] = [await self.js(expression)]
            except Navigating:  # the page is being replaced: ask the next one
                return False
            return bool(seen[0])

        await until(holds, timeout=WAIT_S)
        return seen[0]


@asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Tab]:
    """A headless Chromium with one blank tab; its DevTools address read from its log."""
    assert CHROMIUM is not None, "Debian's chromium is not installed (scripts/test.sh installs it)"
    log = tmp_path / "chromium.log"
    with log.open("wb") as err:
        process = await anyio.open_process(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--no-first-run",
                "--window-size=1400,1800",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        address: list[str] = []

        def listening() -> bool:
            found = re.search(
                r"DevTools listening on (ws://\S+)", log.read_text("utf-8", "replace")
            )
            if found:
                address.append(found.group(1))
            return bool(found) or process.returncode is not None

        await until(listening, timeout=WAIT_S)
        assert address, f"chromium stopped: {log.read_text('utf-8', 'replace')[-2000:]}"
        port = httpx.URL(address[0]).port
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with websockets.connect(url, max_size=None) as ws:
            tab = Tab(ws)
            reader = asyncio.create_task(tab.read())
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await tab.call(f"{domain}.enable")
                yield tab
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await reader
    finally:
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def cell(site_id: int, state: str) -> str:
    return f'document.querySelector(\'#counts tr[data-site="{site_id}"] td[data-state="{state}"]\')'


def counts_of(site_id: int) -> str:
    """An expression: the site's row of the counts table, state -> shown text."""
    return (
        f'Object.fromEntries([...document.querySelectorAll(\'#counts tr[data-site="{site_id}"]'
        " td[data-state]')].map(td => [td.dataset.state, td.textContent]))"
    )


def test_chromium_is_installed() -> None:
    assert CHROMIUM is not None, (
        "Debian's chromium is not on PATH: scripts/test.sh installs it "
        "(apt-get install -y chromium)"
    )
    version = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert version.stdout.startswith("Chromium "), version.stdout


async def test_the_page_shows_the_callers_work_and_follows_it_live(
    gateway: str,
    token: str,
    http_client: Client,
    relay: Relay,
    drive: Drive,
    store: Store,
    tmp_path: Path,
) -> None:
    site = await Site.objects.create(name="polaris", path="/sites/polaris")
    idle = await Site.objects.create(name="theta", path="/sites/theta")
    assert site.id is not None and idle.id is not None
    waiting = await submit(3)
    failing = await submit(1, start=3)
    reason = "needs 8 nodes; the allocation has 2"  # a launcher gives up on a job
    moved = await store.jobs.transition(
        [Change(failing[0], S.PREPROCESSED, S.FAILED, {"reason": reason}, by=Actor.LAUNCHER)]
    )
    assert moved.all_moved
    batch = await BatchJob.objects.create(site_id=site.id, num_nodes=2, wall_time_min=30)
    await store.sessions.create(
        Session(site_id=site.id, batch_job_id=batch.id, hostname="nid0042", pid=4242),
        nodes=[{"hostname": "nid0042", "cores": 64, "gpus": []}],
        running=0,
    )

    async with chromium(tmp_path) as tab:
        await tab.call("Page.navigate", url=f"{gateway}/")
        await tab.wait_for(
            "document.readyState === 'complete' && !!document.getElementById('login')"
        )
        # a wrong token is refused by the form, then the right one lets us in
        for attempt in ("wrong-token", token):
            await tab.js(
                f"document.getElementById('token').value = {json.dumps(attempt)};"
                "setTimeout(() => document.getElementById('login').submit()); true"
            )
            if attempt != token:
                shown = await tab.wait_for("document.getElementById('problem')?.textContent")
                assert "The token was refused" in shown
        await tab.wait_for("!!document.getElementById('counts')")
        assert all("401" in e for e in tab.errors), tab.errors  # the refused login's answer
        tab.errors.clear()
        assert await tab.js("document.cookie") == ""  # HttpOnly: no script reads the token
        assert await tab.js("document.getElementById('user').textContent") == "alice"

        # the initial data: counts, lists, sessions, batch jobs
        await tab.wait_for(f"{cell(site.id, 'PREPROCESSED')}?.textContent === '3'")
        counts = await tab.wait_for(
            f"(c => Object.values(c).includes('…') ? null : c)({counts_of(site.id)})"
        )
        assert counts["FAILED"] == "1" and counts["total"] == "4" and counts["RUNNING"] == "0"
        assert await tab.wait_for(f"{cell(idle.id, 'total')}?.textContent") == "0"
        footer = "document.querySelector('#counts tfoot td[data-state=\"total\"]')?.textContent"
        assert await tab.wait_for(footer) == "4"  # all sites
        failure = await tab.wait_for("document.querySelector('#failures li')?.textContent")
        assert reason in failure and f"job {failing[0]}" in failure
        assert "nid0042:4242" in await tab.wait_for(
            "document.querySelector('#sessions tbody tr')?.textContent"
        )
        assert "pending_submission" in await tab.wait_for(
            f"document.querySelector('#batch-jobs tr[data-batch-job=\"{batch.id}\"]')?.textContent"
        )
        await tab.wait_for("window.balsamStatus.stream === 'live' && window.balsamStatus.loads > 0")
        before = await tab.wait_for(
            "window.balsamStatus.series?.running.at(-1) !== null && window.balsamStatus.series"
        )
        assert before["cumulative"][-1] == 0 and sum(before["finished"]) == 0

        # live: more jobs, two of them running, then finished, and a new batch job
        await submit(2, start=4)
        await tab.wait_for(f"{cell(site.id, 'PREPROCESSED')}?.textContent === '5'")
        running = waiting[:2]
        await drive(running, S.RUNNING)
        await tab.wait_for(f"{cell(site.id, 'RUNNING')}?.textContent === '2'")
        # utilisation: two jobs now, and a mean over the current interval above nothing
        await tab.wait_for(
            "(s => s.runningNow === 2 && s.running.at(-1) > 0)(window.balsamStatus.series)"
        )
        assert await tab.js("document.getElementById('running-now').textContent") == "2"
        await drive(running, S.JOB_FINISHED, result=1)
        await tab.wait_for(f"{cell(site.id, 'JOB_FINISHED')}?.textContent === '2'")
        after = await tab.wait_for(
            "(s => s.cumulative.at(-1) === 2 && s.runningNow === 0 && s)"
            "(window.balsamStatus.series)"
        )
        assert sum(after["finished"]) == 2 and 0 < max(after["running"]) <= 2
        assert await tab.js("document.getElementById('finished-total').textContent") == "2"
        assert await tab.js(f"{cell(site.id, 'PREPROCESSED')}.textContent") == "3"
        latest = await tab.js("document.querySelector('#events li')?.textContent")
        assert "JOB_FINISHED" in latest  # the newest event is a finish
        # another window: its past is read from the event log alone
        await tab.js(
            "const w = document.getElementById('window'); w.value = '300';"
            "w.dispatchEvent(new Event('change')); true"
        )
        short = await tab.wait_for(
            "(s => s.bucketMs === 5000 && s.cumulative.at(-1) !== null && s)"
            "(window.balsamStatus.series)"
        )
        assert sum(short["finished"]) == 2 and short["cumulative"][-1] == 2
        assert 0 < max(short["running"]) <= 2 and short["cumulative"][0] == 0
        second = await BatchJob.objects.create(site_id=site.id, num_nodes=1, wall_time_min=5)
        await tab.wait_for(
            f"!!document.querySelector('#batch-jobs tr[data-batch-job=\"{second.id}\"]')"
        )

        shot = await tab.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = base64.b64decode(shot["data"])
        (tmp_path / "status.png").write_bytes(png)
        print(f"the page as tested: {tmp_path / 'status.png'}")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        assert tab.errors == []
