"""An audit write that fails after the action committed: logged, the action's answer kept."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from parley.container import Container


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_failed_audit_write_is_logged_and_the_action_answered(
    client: httpx.AsyncClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_event: object) -> None:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(container.audit, "record", broken)
    with capture_logs() as logs:
        made = await client.post(
            "/v1/admin/users",
            json={"email": "late@example.com", "password": "a long passphrase", "role": "member"},
        )
    assert made.status_code == 201, made.text  # the user exists: no 500 inviting a retry
    failed = [e for e in logs if e["event"] == "audit_write_failed"]
    assert failed and failed[0]["action"] == "user.create"
    assert failed[0]["target_id"] == made.json()["id"]
