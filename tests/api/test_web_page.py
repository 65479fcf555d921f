"""The built-in web page: served at ``/``, self-contained, wired to the API it uses."""

from __future__ import annotations

import re

import httpx


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
    ):
        assert path in html, path
    for event in ('"sources"', '"token"', '"done"', '"error"'):
        assert event in html, event
    # Server text is rendered as text, never parsed as markup.
    assert "innerHTML" not in html
    assert "getReader" in html


async def test_index_has_accessible_controls(client: httpx.AsyncClient) -> None:
    html = await _page(client)
    for control in ("collection", "collection-name", "files", "session", "question"):
        assert f'for="{control}"' in html and f'id="{control}"' in html, control
    assert 'role="log"' in html and 'role="alert"' in html
