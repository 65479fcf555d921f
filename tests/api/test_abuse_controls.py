"""Abuse controls over HTTP: rate limits (per principal and per IP, proxies, shared through
Redis), login lockout, and token quotas with exact accounting.

Both backends: SQLite alone (in-process counting) and PostgreSQL + Redis (counting in Redis).
The suite's default settings disable rate limits; every test here builds its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from parley.api.app import create_app
from parley.container import Container
from parley.domain.auth import Principal
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.settings import QuotaSettings, RateLimitSettings, SecuritySettings, Settings
from tests.conftest import bearer, make_user

PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct horse battery staple"


# --- a running app with settings of the test's choosing --------------------------------------


@dataclass
class Stack:
    """A migrated container, its app (lifespan running) and clients from chosen addresses."""

    container: Container
    app: FastAPI
    exits: AsyncExitStack

    async def client(self, key: str | None = None, *, ip: str = "127.0.0.1") -> httpx.AsyncClient:
        """A client whose TCP peer is ``ip``, authenticated with ``key`` if given."""
        transport = httpx.ASGITransport(app=self.app, client=(ip, 50000))
        c = httpx.AsyncClient(transport=transport, base_url="http://parley.test")
        if key is not None:
            c.headers.update(bearer(key))
        return await self.exits.enter_async_context(c)

    async def user(self, email: str, **kw: Any) -> tuple[str, str, Principal]:
        """(user id, API key, principal) for a new user."""
        uid, key = await make_user(self.container, email, **kw)
        return uid, key, await self.container.auth.authenticate(key)

    async def session_for(self, actor: Principal, name: str = "kb") -> str:
        """A session over a new (empty) collection, made without HTTP so that no
        rate-limited request is spent on setup."""
        view = await self.container.collections.create(actor=actor, name=name)
        session = await self.container.sessions.create(actor=actor, collection_ids=[view.row.id])
        return str(session.row.id)


@asynccontextmanager
async def running(settings: Settings, llm: FakeLLM | None = None) -> AsyncIterator[Stack]:
    """Build a container over ``settings`` and serve it (closes everything afterwards)."""
    container = Container.build(
        settings,
        embedder=FakeEmbedder(dimension=64),
        llm=llm or FakeLLM(),
        token_counter=ApproxTokenCounter(),
    )
    try:
        await container.prepare_database()
        app = create_app(settings, container=container)
        async with LifespanManager(app) as manager, AsyncExitStack() as exits:
            yield Stack(container, manager.app, exits)  # type: ignore[arg-type]
    finally:
        await container.aclose()


def with_limits(
    settings: Settings,
    *,
    trusted_proxies: list[str] | None = None,
    lockout_attempts: int = 5,
    **rules: str,
) -> Settings:
    """``settings`` with rate limits on (generous defaults, ``rules`` tightened)."""
    security = settings.security.model_copy(
        update={
            "lockout_attempts": lockout_attempts,
            "lockout_window_s": 600,
            "trusted_proxies": trusted_proxies or [],
        }
    )
    generous = {
        k: "1000/minute"
        for k in RateLimitSettings.model_fields
        if k != "enabled" and k not in rules
    }
    return settings.model_copy(
        update={
            "rate_limits": RateLimitSettings(enabled=True, **generous, **rules),
            "security": SecuritySettings.model_validate(security.model_dump()),
        }
    )


async def turn(
    client: httpx.AsyncClient, sid: str, text: str = "What is the return window?"
) -> httpx.Response:
    return await client.post(f"/v1/sessions/{sid}/messages", json={"content": text})


def rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["ratelimit-limit"]), int(h["ratelimit-remaining"]), int(h["ratelimit-reset"])


def assert_429(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == 429
    assert int(response.headers["retry-after"]) >= 1
    return body


# --- rate limits -------------------------------------------------------------------------------


async def test_chat_limit_refuses_the_fourth_call_with_headers(settings: Settings) -> None:
    async with running(with_limits(settings, chat="3/minute", chat_ip="100/minute")) as stack:
        _, key, actor = await stack.user("alice@example.com")
        sid = await stack.session_for(actor)
        client = await stack.client(key)

        seen = []
        for _ in range(3):
            r = await turn(client, sid)
            assert r.status_code == 201, r.text
            seen.append(rate_headers(r))
        assert [limit for limit, _, _ in seen] == [3, 3, 3]
        assert [remaining for _, remaining, _ in seen] == [2, 1, 0]
        assert all(0 <= reset <= 60 for _, _, reset in seen)

        refused = await turn(client, sid)
        body = assert_429(refused, "rate_limited")
        assert "chat" in body["detail"]
        limit, remaining, reset = rate_headers(refused)
        assert (limit, remaining) == (3, 0)
        assert 1 <= reset <= 60
        assert int(refused.headers["retry-after"]) <= 60
        # The refused turn never reached the chat service.
        messages = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
        assert len(messages) == 6


async def test_other_principal_is_free_of_the_first_ones_limit_but_not_of_the_ip_limit(
    settings: Settings,
) -> None:
    limited = with_limits(settings, chat="3/minute", chat_ip="5/minute")
    async with running(limited) as stack:
        _, key_a, actor_a = await stack.user("a@example.com")
        _, key_b, actor_b = await stack.user("b@example.com")
        _, key_c, actor_c = await stack.user("c@example.com")
        sid_a, sid_b = await stack.session_for(actor_a), await stack.session_for(actor_b)
        sid_c = await stack.session_for(actor_c)
        a, b = await stack.client(key_a), await stack.client(key_b)
        c = await stack.client(key_c, ip="203.0.113.9")

        for _ in range(3):
            assert (await turn(a, sid_a)).status_code == 201
        assert_429(await turn(a, sid_a), "rate_limited")  # A's own budget

        # B is not held to A's budget ...
        first = await turn(b, sid_b)
        assert first.status_code == 201, first.text
        # ... but rotating to another principal does not escape the per-IP budget: A's four
        # requests (the refused one counted too) and B's first used the address's five.
        refused = await turn(b, sid_b)
        assert_429(refused, "rate_limited")
        assert rate_headers(refused)[:2] == (5, 0)  # the per-IP rule refused it

        # Another address is unaffected.
        assert (await turn(c, sid_c)).status_code == 201


async def test_a_user_cannot_multiply_their_budget_by_minting_keys(settings: Settings) -> None:
    async with running(with_limits(settings, chat="3/minute", chat_ip="100/minute")) as stack:
        _, key, actor = await stack.user("minter@example.com")
        sid = await stack.session_for(actor)
        first = await stack.client(key)
        for _ in range(3):
            assert (await turn(first, sid)).status_code == 201
        assert_429(await turn(first, sid), "rate_limited")
        minted = await first.post("/v1/me/keys", json={"name": "another"})
        assert minted.status_code == 201, minted.text
        # The principal is the user, whichever of their credentials is used.
        second = await stack.client(minted.json()["key"])
        assert_429(await turn(second, sid), "rate_limited")


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(settings: Settings) -> None:
    async with running(with_limits(settings, chat="100/minute", chat_ip="3/minute")) as stack:
        ids = [await stack.user(f"u{i}@example.com") for i in range(4)]
        sessions = [await stack.session_for(actor) for _, _, actor in ids]
        clients = [await stack.client(key) for _, key, _ in ids]
        for i in range(3):
            r = await clients[i].post(
                f"/v1/sessions/{sessions[i]}/messages",
                json={"content": "hello?"},
                headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
            )
            assert r.status_code == 201, r.text
        # A fresh user and a fresh forged address: still the same peer, still limited.
        r = await clients[3].post(
            f"/v1/sessions/{sessions[3]}/messages",
            json={"content": "hello?"},
            headers={"X-Forwarded-For": "198.51.100.77"},
        )
        assert_429(r, "rate_limited")


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(settings: Settings) -> None:
    limited = with_limits(
        settings, chat="100/minute", chat_ip="2/minute", trusted_proxies=["10.0.0.1"]
    )
    async with running(limited) as stack:
        _, key, actor = await stack.user("proxied@example.com")
        sid = await stack.session_for(actor)
        proxy = await stack.client(key, ip="10.0.0.1")

        async def via(forwarded: str) -> httpx.Response:
            return await proxy.post(
                f"/v1/sessions/{sid}/messages",
                json={"content": "hello?"},
                headers={"X-Forwarded-For": forwarded},
            )

        # Each real client behind the proxy has its own per-IP budget.
        for client_ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
            assert (await via(client_ip)).status_code == 201
            assert (await via(client_ip)).status_code == 201
        assert_429(await via("198.51.100.1"), "rate_limited")
        # A client cannot pick its address by prepending hops: the right-most address not
        # added by a trusted proxy is the one that counts.
        assert_429(await via("192.0.2.200, 198.51.100.2"), "rate_limited")
        assert (await via("198.51.100.2, 198.51.100.4")).status_code == 201


# --- login lockout -----------------------------------------------------------------------------


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def test_failed_logins_lock_the_account_even_for_the_right_password(
    settings: Settings,
) -> None:
    async with running(with_limits(settings, lockout_attempts=3)) as stack:
        await stack.user("victim@example.com", password=PASSWORD)
        await stack.user("bystander@example.com", password=PASSWORD)
        client = await stack.client()

        for _ in range(2):
            r = await login(client, "victim@example.com", "wrong password!!")
            assert r.status_code == 401, r.text
        locked_response = await login(client, "victim@example.com", "wrong again!!")
        locked = assert_429(locked_response, "account_locked")
        assert locked["status"] == 429
        # The lock lifts when the oldest failure leaves the lockout window (600 s here).
        assert 590 <= int(locked_response.headers["retry-after"]) <= 600
        # The right password is refused while locked, whatever the case of the email.
        for email in ("victim@example.com", "  VICTIM@Example.com "):
            r = await login(client, email, PASSWORD)
            assert_429(r, "account_locked")
            assert "access_token" not in r.text
        # Another account is unaffected.
        ok = await login(client, "bystander@example.com", PASSWORD)
        assert ok.status_code == 200 and ok.json()["access_token"]


async def test_successful_login_resets_the_failure_count(settings: Settings) -> None:
    async with running(with_limits(settings, lockout_attempts=3)) as stack:
        await stack.user("forgetful@example.com", password=PASSWORD)
        client = await stack.client()
        for _ in range(2):
            assert (
                await login(client, "forgetful@example.com", "nope nope nope")
            ).status_code == 401
        assert (await login(client, "forgetful@example.com", PASSWORD)).status_code == 200
        # The count starts again: two more failures are not a lockout, a third is.
        for _ in range(2):
            assert (
                await login(client, "forgetful@example.com", "nope nope nope")
            ).status_code == 401
        assert_429(await login(client, "forgetful@example.com", "nope nope nope"), "account_locked")


async def test_unknown_accounts_lock_the_same_way(settings: Settings) -> None:
    # No difference in behaviour reveals whether an email has an account.
    async with running(with_limits(settings, lockout_attempts=2)) as stack:
        client = await stack.client()
        assert (await login(client, "ghost@example.com", "whatever pw!")).status_code == 401
        assert_429(await login(client, "ghost@example.com", "whatever pw!"), "account_locked")


# --- quotas ------------------------------------------------------------------------------------


def usage_of(answer: dict[str, Any]) -> tuple[int, int, int]:
    u = answer["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0
    return u["input_tokens"], u["output_tokens"], u["total_tokens"]


async def streamed_turn(client: httpx.AsyncClient, sid: str, text: str) -> httpx.Response:
    return await client.post(f"/v1/sessions/{sid}/messages?stream=true", json={"content": text})


def done_event(body: str) -> dict[str, Any]:
    for frame in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        if lines["event"] == "done":
            return dict(json.loads(lines["data"]))
    raise AssertionError(f"no done event in {body!r}")


@pytest.mark.parametrize("period", ["daily", "monthly"])
async def test_quota_accounting_is_exact_and_enforced_before_generation(
    settings: Settings, period: str
) -> None:
    quota = 700  # about three turns of FakeLLM usage
    quotas = QuotaSettings(**{f"{period}_tokens": quota})
    llm = FakeLLM()
    async with running(settings.model_copy(update={"quotas": quotas}), llm) as stack:
        _, key_a, actor_a = await stack.user("spender@example.com")
        _, key_b, actor_b = await stack.user("saver@example.com")
        sid_a, sid_b = await stack.session_for(actor_a), await stack.session_for(actor_b)
        a, b = await stack.client(key_a), await stack.client(key_b)

        spent_in = spent_out = 0
        turns = 0
        while spent_in + spent_out < quota:
            assert turns < 40, "turns should use tokens"
            question = f"Question number {turns} about returns and bikes?"
            if turns % 2:
                r = await streamed_turn(a, sid_a, question)
                assert r.status_code == 200, r.text
                i, o, _ = usage_of(done_event(r.text))
            else:
                r = await turn(a, sid_a, question)
                assert r.status_code == 201, r.text
                i, o, _ = usage_of(r.json())
            spent_in, spent_out, turns = spent_in + i, spent_out + o, turns + 1

            usage = (await a.get("/v1/me/usage")).json()
            assert usage["day_input_tokens"] == usage["month_input_tokens"] == spent_in
            assert usage["day_output_tokens"] == usage["month_output_tokens"] == spent_out
            total = spent_in + spent_out
            assert usage["day_total_tokens"] == usage["month_total_tokens"] == total
            assert usage[f"{period}_quota"] == quota
            assert usage[f"{period}_remaining"] == max(quota - total, 0)
            other = "monthly" if period == "daily" else "daily"
            assert usage[f"{other}_quota"] is None and usage[f"{other}_remaining"] is None
        assert turns >= 2, "the quota should allow a few turns before it is used up"

        before = (await a.get(f"/v1/sessions/{sid_a}")).json()["message_count"]
        calls = len(llm.requests)
        refused = await turn(a, sid_a, "One more, please?")
        body = assert_429(refused, "quota_exceeded")
        assert str(quota) in body["detail"]
        retry = int(refused.headers["retry-after"])
        assert retry <= (24 * 3600 + 1 if period == "daily" else 31 * 24 * 3600 + 1)
        # Streaming is refused before any output too.
        assert_429(await streamed_turn(a, sid_a, "And streamed?"), "quota_exceeded")
        # Nothing was generated or stored for the refused turns.
        assert len(llm.requests) == calls
        assert (await a.get(f"/v1/sessions/{sid_a}")).json()["message_count"] == before == 2 * turns
        after = (await a.get("/v1/me/usage")).json()
        assert after["day_total_tokens"] == spent_in + spent_out

        # Another user is unaffected and is billed only their own turn.
        r = await turn(b, sid_b, "My own question?")
        assert r.status_code == 201, r.text
        b_in, b_out, b_total = usage_of(r.json())
        mine = (await b.get("/v1/me/usage")).json()
        assert (mine["day_input_tokens"], mine["day_output_tokens"]) == (b_in, b_out)
        assert mine["month_total_tokens"] == b_total
        assert (await a.get("/v1/me/usage")).json()["month_total_tokens"] == spent_in + spent_out


async def test_usage_is_billed_to_the_caller_and_unlimited_without_quotas(
    settings: Settings,
) -> None:
    async with running(settings) as stack:
        _, key, actor = await stack.user("free@example.com")
        _, admin_key, _ = await stack.user("root@example.com", role="admin")
        sid = await stack.session_for(actor)
        client, admin = await stack.client(key), await stack.client(admin_key)
        _, _, total = usage_of((await turn(client, sid)).json())
        # An admin taking a turn in the user's session pays for it, not the user.
        _, _, admin_total = usage_of((await turn(admin, sid, "An admin asks?")).json())
        usage = (await client.get("/v1/me/usage")).json()
        assert usage["day_total_tokens"] == usage["month_total_tokens"] == total
        assert usage["daily_quota"] is None and usage["monthly_quota"] is None
        assert usage["daily_remaining"] is None and usage["monthly_remaining"] is None
        assert (await admin.get("/v1/me/usage")).json()["day_total_tokens"] == admin_total


# --- shared through Redis ----------------------------------------------------------------------


async def test_two_instances_on_one_redis_share_rate_limits_and_lockouts(
    settings: Settings, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("counting is shared through Redis, configured with PostgreSQL")
    limited = with_limits(settings, read="3/minute", read_ip="100/minute", lockout_attempts=2)
    async with running(limited) as one, running(limited) as two:
        _, key, _ = await one.user("shared@example.com", password=PASSWORD)
        first, second = await one.client(key), await two.client(key)
        statuses = [
            (await first.get("/v1/me")).status_code,
            (await second.get("/v1/me")).status_code,
            (await first.get("/v1/me")).status_code,
        ]
        assert statuses == [200, 200, 200]
        # The fourth call is refused on either instance.
        assert_429(await second.get("/v1/me"), "rate_limited")
        assert_429(await first.get("/v1/me"), "rate_limited")

        anon_one, anon_two = await one.client(), await two.client()
        assert (await login(anon_one, "shared@example.com", "wrong password!")).status_code == 401
        assert_429(await login(anon_two, "shared@example.com", "wrong password!"), "account_locked")
        assert_429(await login(anon_one, "shared@example.com", PASSWORD), "account_locked")
