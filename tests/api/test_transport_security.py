"""Security headers on every response; CORS only for explicitly listed origins."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from parley.api.app import create_app
from parley.container import Container
from parley.settings import ServerSettings, Settings


async def test_every_response_carries_security_headers(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/livez"),
        await client.get("/v1/collections/missing"),  # problem+json error
        await client.get("/"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_no_cors_headers_unless_origins_are_configured(client: httpx.AsyncClient) -> None:
    r = await client.get("/livez", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_allows_only_the_listed_origins(
    settings: Settings, container: Container
) -> None:
    settings.server.cors_origins = ["https://app.example"]
    app = create_app(settings, container=container)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            ok = await c.get("/livez", headers={"Origin": "https://app.example"})
            assert ok.headers["access-control-allow-origin"] == "https://app.example"
            bad = await c.get("/livez", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in bad.headers
            preflight = await c.options(
                "/v1/collections",
                headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "POST",
                },
            )
            assert "access-control-allow-origin" not in preflight.headers


def test_wildcard_origin_is_refused() -> None:
    with pytest.raises(ValidationError, match="explicitly"):
        ServerSettings(cors_origins=["*"])
    assert ServerSettings(cors_origins=["https://a.example/"]).cors_origins == ["https://a.example"]
