"""Small helpers shared by API tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import example_files


async def wait_for_job(
    client: httpx.AsyncClient, job_id: str, limit_s: float = 30.0
) -> dict[str, Any]:
    """Poll a job until it reaches a terminal state."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job did not finish: {body}")
        await asyncio.sleep(0.05)


async def make_collection(client: httpx.AsyncClient, name: str = "docs", *files: str) -> str:
    """Create a collection, ingest example files into it, wait; return its id."""
    response = await client.post("/v1/collections", json={"name": name})
    assert response.status_code == 201, response.text
    cid: str = response.json()["id"]
    upload = await client.post(f"/v1/collections/{cid}/documents", files=example_files(*files))
    assert upload.status_code == 202, upload.text
    job = await wait_for_job(client, upload.json()["job_id"])
    assert job["status"] == "succeeded", job
    return cid
