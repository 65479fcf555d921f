"""The built-in web page: served at ``/``, self-contained, wired to the API it uses.

The static checks run on every backend. The browser tests start a real ``parley serve``
(auth on, fake models, embedded SQLite) and drive headless Chromium over the DevTools
protocol: sign in with a password and with an API key, upload, ask a question and see the
cited answer streamed, survive an expired access token through one refresh, sign out. The
first run is walked through: the bootstrap key first, then an email and password for that
admin, then the bootstrap key revoked from the page. Cancelled (and vanished) ingestion jobs
end the progress poll. A last test runs the page against a server in local dev mode
(``PARLEY_AUTH=off``), where it must work without signing in. They are skipped when no
Chromium is installed (``apt-get install chromium``; or point ``PARLEY_TEST_CHROMIUM`` at a
binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.settings import Settings
from tests.conftest import DOCS, TEST_JWT_SECRET


async def _page(client: httpx.AsyncClient) -> str:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


async def test_index_is_served_as_html(client: httpx.AsyncClient) -> None:
    html = await _page(client)
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<title>Parley</title>" in html
    assert '<meta name="viewport"' in html


async def test_index_is_public(app_client: httpx.AsyncClient) -> None:
    # The page itself needs no credentials: it asks for them.
    response = await app_client.get("/")
    assert response.status_code == 200
    assert 'id="login-form"' in response.text


async def test_index_is_self_contained(client: httpx.AsyncClient) -> None:
    html = await _page(client)
    # No external scripts, styles, fonts or images: everything is inline.
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*(?!['\"]?data:)", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html, re.I)
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", html, re.I)
    assert not re.search(r"https?://", html, re.I)


async def test_index_uses_the_api(client: httpx.AsyncClient) -> None:
    html = await _page(client)
    for path in (
        "/v1/collections",
        "/documents",
        "/v1/jobs/",
        "/v1/sessions",
        "/messages",
        "stream=true",
        "/v1/me",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/setup",
        "/v1/me/keys/",
        "PATCH",
    ):
        assert path in html, path
    for event in ('"sources"', '"token"', '"done"', '"error"'):
        assert event in html, event
    # Server text is rendered as text, never parsed as markup.
    assert "innerHTML" not in html
    assert "getReader" in html


async def test_index_keeps_credentials_in_session_storage_and_headers(
    client: httpx.AsyncClient,
) -> None:
    html = await _page(client)
    assert "sessionStorage" in html
    assert "localStorage" not in html
    assert "document.cookie" not in html
    assert '"Bearer "' in html and "Authorization" in html
    # Every API request goes through the one authenticated fetch (the stream included).
    script = html[html.index("<script>") :]
    raw_fetches = re.findall(r"\bfetch\(\s*([^,)]+)", script)
    assert sorted(set(raw_fetches)) == [
        '"/v1/auth/login"',
        '"/v1/auth/refresh"',
        '"/v1/auth/setup"',  # public: is this a first run (key form first)?
        '"/v1/me"',  # the API-key box checks the pasted key (with its own Bearer header)
        "path",  # inside authFetch
    ], raw_fetches
    assert "authFetch(`/v1/sessions/" in script  # the SSE stream


async def test_index_has_accessible_controls(client: httpx.AsyncClient) -> None:
    html = await _page(client)
    for control in (
        "collection",
        "collection-name",
        "files",
        "session",
        "question",
        "login-email",
        "login-password",
        "api-key",
        "secure-email",
        "secure-password",
        "secure-confirm",
    ):
        assert f'for="{control}"' in html and f'id="{control}"' in html, control
    assert 'role="log"' in html and 'role="alert"' in html
    assert 'type="password"' in html and 'autocomplete="current-password"' in html


# --------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    configured = os.environ.get("PARLEY_TEST_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _chromium()
browser_test = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)"
)

EMAIL = "reader@example.com"
PASSWORD = "correct horse battery staple"
QUESTION = "How long is the frame warranty?"
OWNER = "owner@example.com"
OWNER_PASSWORD = "a long and secret owner passphrase"
KEY_FORM_FIRST = (
    "document.getElementById('signin-methods').firstElementChild.id === 'key-form'"
    " && !document.getElementById('setup-hint').hidden"
)
PASSWORD_FORM_FIRST = (
    "document.getElementById('signin-methods').firstElementChild.id === 'login-form'"
    " && document.getElementById('setup-hint').hidden"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(data_dir: Path, *, auth: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(
        PARLEY_DATA_DIR=str(data_dir),
        PARLEY_AUTH=auth,
        PARLEY_JWT_SECRET=TEST_JWT_SECRET,
        PARLEY_LLM__PROVIDER="fake",
        PARLEY_EMBEDDINGS__PROVIDER="fake",
        PARLEY_EMBEDDINGS__DIMENSION="64",
        PARLEY_CHUNKING__TOKENIZER="approx",
        PARLEY_JOBS__POLL_INTERVAL_S="0.05",
        PARLEY_SECURITY__ARGON2_TIME_COST="1",
        PARLEY_SECURITY__ARGON2_MEMORY_KIB="1024",
        PARLEY_SECURITY__ARGON2_PARALLELISM="1",
        PARLEY_SERVER__LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


async def _create_account(data_dir: Path, *, first_run: bool) -> str:
    """A member with a password and an API key, written before the server starts; or, for
    a first run, the bootstrap admin (no password) and its key, exactly as ``parley serve``
    makes them on its first start (it then prints the key; here the test keeps it)."""
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        jwt_secret=TEST_JWT_SECRET,
        embeddings={"provider": "fake", "dimension": 64},
        llm={"provider": "fake"},
        chunking={"tokenizer": "approx"},
        security={"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
    )
    container = Container.build(
        settings,
        embedder=FakeEmbedder(dimension=64),
        llm=FakeLLM(),
        token_counter=ApproxTokenCounter(),
    )
    try:
        await container.prepare_database()
        if first_run:
            key = await container.auth.bootstrap()
            assert key is not None
            return key
        user = await container.accounts.create(email=EMAIL, password=PASSWORD, role="member")
        new = await container.auth.create_key(actor=SYSTEM, user_id=user.id, name="web test")
        return str(new.secret)
    finally:
        await container.aclose()


@dataclass
class LiveServer:
    """A ``parley serve`` subprocess on a free loopback port."""

    url: str
    key: str | None
    log: Path


@contextlib.asynccontextmanager
async def live_server(
    tmp: Path, *, auth: str, first_run: bool = False, env: dict[str, str] | None = None
) -> AsyncIterator[LiveServer]:
    data_dir = tmp / "data"
    key = await _create_account(data_dir, first_run=first_run) if auth == "on" else None
    port = _free_port()
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "parley", "serve", "--host", "127.0.0.1", "--port", str(port)),
            cwd=tmp,  # no stray .env file
            env=_server_env(data_dir, auth=auth, extra=env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=url, timeout=2.0) as probe:
            while True:
                if proc.returncode is not None:
                    raise AssertionError(f"server exited early:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not ready:\n{log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)
        yield LiveServer(url=url, key=key, log=log)
    finally:
        await _stop(proc, 15)


async def _stop(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@dataclass
class Page:
    """One Chromium tab, driven over the DevTools protocol (flattened session)."""

    send: Callable[..., Awaitable[dict[str, Any]]]
    session: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.send(method, params, self.session)

    async def js(self, expression: str) -> Any:
        """Evaluate in the page (promises awaited) and return the value."""
        reply = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def until(self, expression: str, timeout_s: float = 20.0) -> Any:
        """Poll ``expression`` until truthy; fail with what the page shows."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = await self.js("document.body.innerText")
                raise AssertionError(f"timed out waiting for {expression!r}; page:\n{shown}")
            await asyncio.sleep(0.1)

    async def fill(self, selector: str, value: str) -> None:
        """Type into a field (value set, input event fired)."""
        await self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            f"e.focus(); e.value = {json.dumps(value)}; "
            "e.dispatchEvent(new Event('input', { bubbles: true })); })()"
        )

    async def click(self, selector: str) -> None:
        await self.js(f"document.querySelector({json.dumps(selector)}).click()")

    async def storage(self) -> dict[str, str]:
        return dict(
            await self.js(
                "Object.fromEntries(Object.keys(sessionStorage)"
                ".map((k) => [k, sessionStorage.getItem(k)]))"
            )
        )

    def api_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "/v1/" in r["url"]]


@contextlib.asynccontextmanager
async def chromium(tmp: Path) -> AsyncIterator[Page]:
    """Headless Chromium with a fresh profile; yields one tab with network events recorded."""
    import websockets.asyncio.client

    assert CHROMIUM is not None
    profile = Path(tempfile.mkdtemp(prefix="parley-chromium-", dir=tmp))
    args = [
        CHROMIUM,
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    reader: asyncio.Task[None] | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.returncode is not None or time.monotonic() > deadline:
                pytest.fail("Chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with websockets.asyncio.client.connect(
            f"ws://127.0.0.1:{port}{path}", max_size=None
        ) as ws:
            ids = itertools.count(1)
            pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            page: Page | None = None

            async def read() -> None:
                async for raw in ws:
                    msg = json.loads(raw)
                    if "id" in msg:
                        fut = pending.pop(msg["id"], None)
                        if fut is not None and not fut.done():
                            if "error" in msg:
                                fut.set_exception(AssertionError(f"CDP error: {msg['error']}"))
                            else:
                                fut.set_result(msg.get("result", {}))
                    elif msg.get("method") == "Network.requestWillBeSent" and page is not None:
                        page.requests.append(msg["params"]["request"])

            async def send(
                method: str, params: dict[str, Any] | None = None, session: str | None = None
            ) -> dict[str, Any]:
                n = next(ids)
                fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                pending[n] = fut
                message: dict[str, Any] = {"id": n, "method": method, "params": params or {}}
                if session:
                    message["sessionId"] = session
                await ws.send(json.dumps(message))
                return await asyncio.wait_for(fut, 30)

            reader = asyncio.create_task(read())
            target = (await send("Target.createTarget", {"url": "about:blank"}))["targetId"]
            attached = await send("Target.attachToTarget", {"targetId": target, "flatten": True})
            page = Page(send=send, session=attached["sessionId"])
            await page.call("Page.enable")
            await page.call("Runtime.enable")
            await page.call("Network.enable")
            yield page
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await _stop(proc, 10)


async def _open(page: Page, url: str) -> None:
    await page.call("Page.navigate", url=url + "/")
    await page.until("document.readyState === 'complete' && !!document.getElementById('app')")


async def _sign_in_form_shown(page: Page) -> None:
    await page.until("!document.getElementById('signin').hidden")
    assert await page.js("document.getElementById('app').hidden") is True


async def _set_files(page: Page, selector: str, *paths: Path) -> None:
    root = (await page.call("DOM.getDocument"))["root"]["nodeId"]
    node = (await page.call("DOM.querySelector", nodeId=root, selector=selector))["nodeId"]
    await page.call("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])


async def _ask_and_see_citations(page: Page, question: str) -> str:
    await page.fill("#question", question)
    await page.js("document.getElementById('ask').requestSubmit()")
    answer = "document.querySelector('#log article.msg.assistant:last-of-type')"
    await page.until(f"{answer} && !{answer}.classList.contains('streaming')", 30)
    assert not await page.js(f"{answer}.classList.contains('error')"), await page.js(
        f"{answer}.innerText"
    )
    # The answer cites [1] as a link to a numbered source listed under it.
    links = await page.js(f"[...{answer}.querySelectorAll('sup a')].map((a) => a.textContent)")
    assert "[1]" in links, links
    sources = await page.js(
        f"[...{answer}.querySelectorAll('details.sources li')].map((li) => li.textContent)"
    )
    assert sources and sources[0].startswith("[1]"), sources
    await page.click("#log article.msg.assistant:last-of-type sup a")
    assert await page.js(f"{answer}.querySelector('details.sources').open") is True
    return str(await page.js(f"{answer}.querySelector('.text').innerText"))


@browser_test
async def test_sign_in_ask_refresh_and_sign_out_in_a_browser(tmp_path: Path) -> None:
    async with live_server(tmp_path, auth="on") as server, chromium(tmp_path) as page:
        await _open(page, server.url)
        # Not signed in: the page asks for credentials and shows nothing else. Not a first
        # run (an account has a password): the password form comes first.
        await _sign_in_form_shown(page)
        assert await page.storage() == {}
        assert await page.js(PASSWORD_FORM_FIRST)

        # A wrong password is refused with the server's reason; nothing is stored.
        await page.fill("#login-email", EMAIL)
        await page.fill("#login-password", "not the password at all")
        await page.click("#login-btn")
        await page.until("document.getElementById('signin-error').textContent")
        assert await page.storage() == {}

        await page.fill("#login-password", PASSWORD)
        signed_in_from = len(page.requests)
        await page.click("#login-btn")
        await page.until("!document.getElementById('app').hidden")
        who = await page.js("document.getElementById('who').textContent")
        assert EMAIL in who and "member" in who
        stored = await page.storage()
        assert set(stored) == {"parley.access", "parley.refresh", "parley.kind"}
        assert stored["parley.kind"] == "token"
        assert await page.js("localStorage.length") == 0
        assert await page.js("document.cookie") == ""
        first_refresh = stored["parley.refresh"]

        # Create a collection, upload a document, start a session, ask: a cited answer.
        await page.fill("#collection-name", "handbook")
        await page.js("document.getElementById('new-collection').requestSubmit()")
        await page.until("document.getElementById('collection').selectedOptions[0]?.value")
        await _set_files(page, "#files", DOCS / "warranty.md")
        await page.click("#upload-btn")
        await page.until("document.getElementById('job-status').textContent.startsWith('Done')")
        await page.click("#new-session")
        await page.until("!document.getElementById('question').disabled")
        text = await _ask_and_see_citations(page, QUESTION)
        assert text.startswith("Based on the documents"), text

        # The access token expires (here: is corrupted). Two calls fail at once; the page
        # refreshes ONCE (a second refresh would replay the spent token and end the login)
        # and both calls succeed.
        await page.js("sessionStorage.setItem('parley.access', 'expired.access.token')")
        before = len(page.requests)
        await page.js("Promise.all([loadCollections(), loadSessions()]).then(() => true)")
        refreshes = [r for r in page.requests[before:] if r["url"].endswith("/v1/auth/refresh")]
        assert len(refreshes) == 1, [r["url"] for r in page.requests[before:]]
        stored = await page.storage()
        assert stored["parley.refresh"] != first_refresh
        assert stored["parley.access"] != "expired.access.token"
        assert await page.js("document.getElementById('app').hidden") is False
        # ... and a second question still streams with the renewed token.
        await _ask_and_see_citations(page, "What does the warranty not cover?")

        # Sign out: the login ends on the server and the tab forgets the tokens.
        refresh_token = stored["parley.refresh"]
        await page.click("#signout")
        await _sign_in_form_shown(page)
        assert await page.storage() == {}
        assert any(r["url"].endswith("/v1/auth/logout") for r in page.requests)

        # While signed in, every API call (the two streams and the logout included) carried
        # the credential in the Authorization header; none ever put a token in its URL.
        secrets = {first_refresh, *stored.values()} - {"token"}
        for request in page.api_requests():
            assert not any(s in request["url"] for s in secrets), request["url"]
        signed_in = [r for r in page.requests[signed_in_from:] if "/v1/" in r["url"]]
        paths = [r["url"].split("/v1/", 1)[1] for r in signed_in]
        assert paths[0] == "auth/login" and "auth/refresh" in paths and "auth/logout" in paths
        assert sum("stream=true" in p for p in paths) == 2, paths
        for request in signed_in:
            headers = {k.lower(): v for k, v in request["headers"].items()}
            if request["url"].endswith(("/v1/auth/login", "/v1/auth/refresh", "/v1/auth/setup")):
                assert "authorization" not in headers, request["url"]
            else:
                assert headers.get("authorization", "").startswith("Bearer "), request["url"]
        async with httpx.AsyncClient(base_url=server.url) as api:
            again = await api.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
            assert again.status_code == 401, again.text

        # A reload stays signed out (nothing persisted) ...
        await _open(page, server.url)
        await _sign_in_form_shown(page)

        # ... and an API key pasted in the key box works as well (no refresh token kept).
        await page.fill("#api-key", "pk_not_a_real_key")
        await page.click("#key-btn")
        await page.until("document.getElementById('signin-error').textContent")
        assert await page.storage() == {}
        assert server.key is not None
        await page.fill("#api-key", server.key)
        await page.click("#key-btn")
        await page.until("!document.getElementById('app').hidden")
        assert await page.storage() == {"parley.access": server.key, "parley.kind": "key"}
        assert "API key" in await page.js("document.getElementById('who').textContent")
        names = await page.until(
            "[...document.getElementById('collection').options].map((o) => o.textContent)"
            ".filter((t) => t.startsWith('handbook')).length"
        )
        assert names == 1
        # The same user's session history is there, with its cited answers.
        await page.until("document.getElementById('session').options.length > 1")
        await page.js(
            "(() => { const s = document.getElementById('session'); s.selectedIndex = 1; "
            "s.dispatchEvent(new Event('change')); })()"
        )
        await page.until("document.querySelectorAll('#log article.msg.assistant').length === 2")
        assert await page.js("document.querySelectorAll('#log sup a').length") >= 2

        # Signing out of a key only forgets it here: the key itself still works.
        await page.click("#signout")
        await _sign_in_form_shown(page)
        async with httpx.AsyncClient(base_url=server.url) as api:
            me = await api.get("/v1/me", headers={"Authorization": f"Bearer {server.key}"})
            assert me.status_code == 200


@browser_test
async def test_revoked_credentials_send_the_page_back_to_sign_in(tmp_path: Path) -> None:
    async with live_server(tmp_path, auth="on") as server, chromium(tmp_path) as page:
        assert server.key is not None
        await _open(page, server.url)
        await _sign_in_form_shown(page)
        await page.fill("#api-key", server.key)
        await page.click("#key-btn")
        await page.until("!document.getElementById('app').hidden")
        async with httpx.AsyncClient(base_url=server.url) as api:
            headers = {"Authorization": f"Bearer {server.key}"}
            keys = (await api.get("/v1/me/keys", headers=headers)).json()["items"]
            revoked = await api.delete(f"/v1/me/keys/{keys[0]['id']}", headers=headers)
            assert revoked.status_code == 204
        await page.js("loadCollections().catch(() => null)")
        await _sign_in_form_shown(page)
        message = await page.js("document.getElementById('signin-msg').textContent")
        assert "sign in again" in message
        assert await page.storage() == {}


@browser_test
async def test_first_run_key_then_email_and_password_then_revoke_the_key(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path, auth="on", first_run=True) as server,
        chromium(tmp_path) as page,
        httpx.AsyncClient(base_url=server.url) as api,
    ):
        key = server.key
        assert key is not None
        assert (await api.get("/v1/auth/setup")).json() == {"needs_setup": True}
        await _open(page, server.url)
        await _sign_in_form_shown(page)
        # A fresh install: no password works yet, so the key form comes first, focused,
        # with a hint saying where the key comes from.
        await page.until(KEY_FORM_FIRST)
        assert await page.js("document.activeElement.id") == "api-key"
        assert "parley serve" in await page.js("document.getElementById('setup-hint').innerText")

        await page.fill("#api-key", key)
        await page.click("#key-btn")
        await page.until("!document.getElementById('app').hidden")
        await page.until("!document.getElementById('secure').hidden")
        assert await page.js("document.getElementById('h-secure').textContent") == (
            "Secure your admin account"
        )
        assert await page.js("document.getElementById('secure-email').value") == (
            "admin@parley.local"
        )

        # Typos are caught here; the server's password rule is shown as it says it.
        await page.fill("#secure-email", OWNER)
        await page.fill("#secure-password", OWNER_PASSWORD)
        await page.fill("#secure-confirm", OWNER_PASSWORD + "!")
        await page.click("#secure-btn")
        await page.until("document.getElementById('secure-error').textContent.includes('differ')")
        await page.fill("#secure-password", "short")
        await page.fill("#secure-confirm", "short")
        await page.click("#secure-btn")
        await page.until(
            "document.getElementById('secure-error').textContent.includes('password must be')"
        )
        assert (await api.get("/v1/auth/setup")).json() == {"needs_setup": True}

        await page.fill("#secure-password", OWNER_PASSWORD)
        await page.fill("#secure-confirm", OWNER_PASSWORD)
        await page.click("#secure-btn")
        await page.until("!document.getElementById('secure-done').hidden")
        assert OWNER in await page.js("document.getElementById('who').textContent")
        assert (await api.get("/v1/auth/setup")).json() == {"needs_setup": False}
        short, patch = [r for r in page.requests if r["method"] == "PATCH"]
        assert patch["url"].endswith("/v1/me") and short["url"] == patch["url"]
        assert json.loads(patch["postData"]) == {"email": OWNER, "password": OWNER_PASSWORD}

        # Sign out: the password form is first again, the new email already filled in.
        await page.click("#signout")
        await _sign_in_form_shown(page)
        await page.until(PASSWORD_FORM_FIRST)
        assert await page.storage() == {}
        assert await page.js("document.getElementById('login-email').value") == OWNER
        assert await page.js("document.activeElement.id") == "login-password"
        await page.fill("#login-password", OWNER_PASSWORD)
        await page.click("#login-btn")
        await page.until("!document.getElementById('app').hidden")
        who = await page.js("document.getElementById('who').textContent")
        assert OWNER in who and "admin" in who and "API key" not in who
        assert (await page.storage())["parley.kind"] == "token"

        # Signed in with the password, the page offers to revoke the bootstrap key.
        await page.until("!document.getElementById('revoke-step').hidden")
        assert await page.js("document.getElementById('h-secure').textContent") == (
            "Revoke the bootstrap key"
        )
        assert (await api.get("/v1/me", headers={"Authorization": f"Bearer {key}"})).is_success
        await page.click("#revoke-bootstrap")
        await page.until("document.getElementById('secure-status').textContent.includes('revoked')")
        (revoke,) = [r for r in page.requests if r["method"] == "DELETE"]
        assert "/v1/me/keys/" in revoke["url"]
        gone = await api.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert gone.status_code == 401, gone.text
        await page.click("#revoke-later")
        assert await page.js("document.getElementById('secure').hidden") is True

        # A reload shows the password form first; the key is no more on offer to revoke.
        await page.click("#signout")
        await _sign_in_form_shown(page)
        await page.until(PASSWORD_FORM_FIRST)
        await page.fill("#login-password", OWNER_PASSWORD)
        await page.click("#login-btn")
        await page.until("!document.getElementById('app').hidden")
        await page.until("document.getElementById('collection').options.length >= 1")
        await asyncio.sleep(0.5)  # the page had time to look for the key
        assert await page.js("document.getElementById('secure').hidden") is True


def _job_polls(page: Page) -> list[str]:
    return [r["url"] for r in page.requests if "/v1/jobs/" in r["url"] and r["method"] == "GET"]


async def _poll_has_stopped(page: Page) -> None:
    polls = len(_job_polls(page))
    await asyncio.sleep(1.5)  # more than two poll intervals
    assert len(_job_polls(page)) == polls, _job_polls(page)[polls:]
    assert await page.js("document.getElementById('job-progress').hidden") is True
    assert await page.js("document.getElementById('upload-btn').disabled") is False


@browser_test
async def test_a_cancelled_or_vanished_job_ends_the_progress_poll(tmp_path: Path) -> None:
    # No job runner in this server (as when `parley worker` processes run the jobs and none
    # is up): an upload stays queued until it is cancelled.
    no_runner = {"PARLEY_JOBS__RUN_IN_PROCESS": "false"}
    async with (
        live_server(tmp_path, auth="on", env=no_runner) as server,
        chromium(tmp_path) as page,
        httpx.AsyncClient(base_url=server.url) as api,
    ):
        assert server.key is not None
        headers = {"Authorization": f"Bearer {server.key}"}
        await _open(page, server.url)
        await _sign_in_form_shown(page)
        await page.fill("#api-key", server.key)
        await page.click("#key-btn")
        await page.until("!document.getElementById('app').hidden")
        await page.fill("#collection-name", "queue")
        await page.js("document.getElementById('new-collection').requestSubmit()")
        await page.until("document.getElementById('collection').selectedOptions[0]?.value")
        collection_id = await page.js("document.getElementById('collection').value")

        await _set_files(page, "#files", DOCS / "warranty.md")
        await page.click("#upload-btn")
        await page.until("document.getElementById('job-status').textContent.startsWith('queued')")
        job_id = _job_polls(page)[0].rsplit("/", 1)[1]
        cancelled = await api.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        await page.until(
            "document.getElementById('job-status').textContent.startsWith('Ingestion cancelled')"
        )
        status = await page.js("document.getElementById('job-status').textContent")
        assert "0 of 1 file" in status, status
        await _poll_has_stopped(page)

        # A job that vanishes while polled (its collection deleted) ends the poll with the
        # server's reason instead of spinning.
        await _set_files(page, "#files", DOCS / "warranty.md")
        before = len(_job_polls(page))
        await page.click("#upload-btn")
        await page.until("document.getElementById('job-status').textContent.startsWith('queued')")
        assert len(_job_polls(page)) > before
        deleted = await api.delete(f"/v1/collections/{collection_id}", headers=headers)
        assert deleted.status_code == 204, deleted.text
        await page.until(
            "document.getElementById('job-status').textContent"
            ".startsWith('Stopped following the ingestion job')"
        )
        assert "not_found" in await page.js("document.getElementById('job-status').textContent")
        await _poll_has_stopped(page)
        assert await page.js("document.getElementById('app').hidden") is False


@browser_test
async def test_page_works_without_signing_in_in_local_dev_mode(tmp_path: Path) -> None:
    async with live_server(tmp_path, auth="off") as server, chromium(tmp_path) as page:
        await _open(page, server.url)
        await page.until("!document.getElementById('app').hidden")
        assert await page.js("document.getElementById('signin').hidden") is True
        assert await page.js("document.getElementById('signout').hidden") is True
        assert "dev mode" in await page.js("document.getElementById('who').textContent")
        await page.fill("#collection-name", "notes")
        await page.js("document.getElementById('new-collection').requestSubmit()")
        await page.until("document.getElementById('collection').selectedOptions[0]?.value")
        await _set_files(page, "#files", DOCS / "warranty.md")
        await page.click("#upload-btn")
        await page.until("document.getElementById('job-status').textContent.startsWith('Done')")
        await page.click("#new-session")
        await page.until("!document.getElementById('question').disabled")
        await _ask_and_see_citations(page, QUESTION)
        assert await page.storage() == {}
