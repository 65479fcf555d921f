"""Structured logs: JSON lines, each carrying the request id returned to the client."""

from __future__ import annotations

import json

import httpx
import pytest

from parley.logging import configure_logging


async def test_every_request_log_line_has_the_request_id(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="info", json=True, cache=False)
    try:
        capsys.readouterr()
        response = await client.post("/v1/collections", json={"name": "logged"})
        rid = response.headers["x-request-id"]
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
        mine = [line for line in lines if line.get("request_id") == rid]
        assert any(line["event"] == "request" and line["status"] == 201 for line in mine)
        assert all("timestamp" in line and "level" in line for line in lines)
    finally:
        configure_logging(level="info", json=False, cache=False)
