"""The OpenAPI document tells the truth: Schemathesis calls every operation with generated
valid and invalid requests, as an authenticated admin, and checks each answer against it.

Statuses, content types (``application/problem+json`` for every error) and response bodies
must be the documented ones, and nothing may answer 5xx. Besides random ids, requests also
name real objects (a collection with an ingested document, its job, a session with a turn, a
member, a key), so success bodies are checked too. Bounded and deterministic: a fixed number
of examples per operation, derandomized, no shrinking; deletions run last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from parley.api.app import create_app
from parley.api.security import PUBLIC_PATHS
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.settings import Settings
from tests.conftest import DOCS, TEST_SECURITY, bearer

MAX_EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _settings(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        embeddings={"provider": "fake", "dimension": 64},
        llm={"provider": "fake"},
        chunking={"tokenizer": "approx", "max_tokens": 120, "overlap_tokens": 20},
        jobs={"poll_interval_s": 0.05},
        retrieval={"index_sync_interval_s": 0.0},
        **TEST_SECURITY,  # type: ignore[arg-type]
    )


def _operations() -> list[tuple[str, str]]:
    """Every documented (method, path), deletions last so they do not remove the seeded
    objects the others use (the document does not depend on the data dir)."""
    document = create_app(_settings(Path("unused"))).openapi()
    found = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops]
    return sorted(found, key=lambda op: op[0] == "DELETE")


async def _admin_key(settings: Settings) -> str:
    """Migrate the database and create an admin with a full API key, before the app starts
    (the app builds its own container in Schemathesis's event-loop thread)."""
    container = Container.build(settings)
    try:
        await container.prepare_database()
        user = await container.accounts.create(
            email="admin@example.com", password=None, role="admin"
        )
        new = await container.auth.create_key(actor=SYSTEM, user_id=user.id, name="schemathesis")
        return new.secret
    finally:
        await container.aclose()


def _ok(response: requests.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    body: dict[str, Any] = response.json()
    return body


def _seed(client: requests.Session) -> dict[str, str]:
    """Real objects, through the API; returns them by path-parameter name."""
    collection = _ok(client.post("/v1/collections", json={"name": "docs"}))["id"]
    upload = client.post(
        f"/v1/collections/{collection}/documents",
        files=[("files", ("quickstart.txt", (DOCS / "quickstart.txt").read_bytes()))],
    )
    job = _ok(upload)["job_id"]
    deadline = time.monotonic() + 30
    while (status := _ok(client.get(f"/v1/jobs/{job}"))["status"]) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the seed document was not ingested"
        time.sleep(0.05)
    assert status == "succeeded"
    documents = _ok(client.get(f"/v1/collections/{collection}/documents"))["items"]
    session = _ok(client.post("/v1/sessions", json={"collection_ids": [collection]}))["id"]
    turn = client.post(f"/v1/sessions/{session}/messages", json={"content": "How do I start?"})
    message = _ok(turn)["id"]
    member = _ok(
        client.post(
            "/v1/admin/users",
            json={"email": "member@example.com", "password": "a long passphrase"},
        )
    )["id"]
    _ok(client.post(f"/v1/collections/{collection}/grants", json={"user_id": member}))
    key = _ok(client.post("/v1/me/keys", json={"name": "spare", "scopes": ["chat"]}))["id"]
    _ok(client.put("/v1/me/provider-keys/openai", json={"api_key": "sk-test"}))
    return {
        "collection_id": collection,
        "document_id": documents[0]["id"],
        "job_id": job,
        "session_id": session,
        "message_id": message,
        "user_id": member,
        "key_id": key,
        "provider": "openai",
    }


@dataclass
class Api:
    """The loaded schema, the admin's key and real objects to name in paths."""

    schema: BaseSchema
    key: str
    objects: dict[str, str]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A fresh embedded installation served in-process; its lifespan runs in Schemathesis's
    event-loop thread until the module is done."""
    config = _settings(tmp_path_factory.mktemp("conformance") / "data")
    key = asyncio.run(_admin_key(config))
    app = create_app(config)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        with get_client(app) as client:
            client.headers.update(bearer(key))
            objects = _seed(client)
        yield Api(schema, key, objects)
    finally:
        shutdown_lifespans()


# Schemathesis's own pytest integration (``schema.parametrize()``) does not run under
# pytest 9, so each operation is one parametrized test driving Hypothesis directly.
@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_operation_conforms_to_its_openapi_description(
    method: str, path: str, api: Api
) -> None:
    operation = api.schema[path][method]
    # Names without a seeded object (a route added since) are generated like the others.
    real = {name: api.objects[name] for name in _path_names(path) if name in api.objects}
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Case) -> None:
        case.call_and_validate(headers=bearer(api.key), checks=CHECKS)

    conforms()


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def test_every_documented_error_is_a_problem() -> None:
    """Every error in the document is a ``Problem`` in problem+json (FastAPI's default
    ``HTTPValidationError`` is gone), and every protected operation names its auth errors."""
    document = create_app(_settings(Path("unused"))).openapi()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert {"type", "title", "status", "detail", "code"} <= set(schemas["Problem"]["required"])
    errors = {
        (method, path, status): response
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status >= "400" and path != "/readyz"  # readiness answers 503 with its own body
    }
    assert errors
    for where, response in errors.items():
        assert response["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, where
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path not in PUBLIC_PATHS:
                assert {"401", "403", "429"} <= set(operation["responses"]), (path, operation)
                assert operation["security"] == [{"bearer": []}]
