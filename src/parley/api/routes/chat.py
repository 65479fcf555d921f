"""Search, sessions and chat turns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from parley.api.deps import ContainerDep, PageDep
from parley.api.errors import problem, status_for
from parley.api.openapi import PROVIDERS, problems
from parley.api.schemas.chat import (
    MessageCreate,
    MessageList,
    MessageRead,
    MessageRetry,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SessionCreate,
    SessionList,
    SessionRead,
)
from parley.api.security import AnyActor, ChatActor
from parley.api.sse import SSE_HEADERS, encode_event
from parley.domain.retrieval import SearchQuery
from parley.errors import ParleyError
from parley.services.chat import ChatService, PreparedTurn, message_dict
from parley.services.sessions import SessionView

router = APIRouter(prefix="/v1", tags=["chat"])


def _session(view: SessionView) -> SessionRead:
    r = view.row
    return SessionRead(
        id=r.id,
        title=r.title,
        collection_ids=view.collection_ids,
        message_count=view.message_count,
        created_at=r.created_at,
    )


@router.post("/search", response_model=SearchResponse, responses=problems(404, 409, *PROVIDERS))
async def search(body: SearchRequest, actor: ChatActor, container: ContainerDep) -> SearchResponse:
    """Hybrid search across collections the caller may read (debugging and reuse).

    Collections are given by id or by name, resolved as on every other route.
    """
    ids = await container.access.resolve(actor, body.collection_ids, field="collection_ids")
    hits = await container.retrieval.search(
        SearchQuery(text=body.query, collection_ids=ids, top_k=body.top_k, filters=body.filters),
        require_collections=True,
    )
    return SearchResponse(
        results=[
            SearchHit(
                chunk_id=h.chunk_id,
                collection_id=h.collection_id,
                document_id=h.document_id,
                title=h.document_title,
                source=h.source,
                text=h.text,
                page=h.page,
                section=h.section,
                score=round(h.score, 6),
                dense_rank=h.dense_rank,
                keyword_rank=h.keyword_rank,
                metadata=h.meta,
            )
            for h in hits
        ]
    )


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionRead,
    responses=problems(404, 409),
)
async def create_session(
    body: SessionCreate, actor: ChatActor, container: ContainerDep
) -> SessionRead:
    """Start a chat session over one or more collections the caller may read (ids or names);
    the session keeps their ids."""
    return _session(
        await container.sessions.create(
            actor=actor, collection_ids=body.collection_ids, title=body.title
        )
    )


@router.get("/sessions", response_model=SessionList)
async def list_sessions(actor: AnyActor, container: ContainerDep, page: PageDep) -> SessionList:
    """The caller's sessions (admins: all), newest first."""
    result = await container.sessions.page(actor=actor, limit=page.limit, cursor=page.cursor)
    return SessionList(items=[_session(v) for v in result.items], next_cursor=result.next_cursor)


@router.get("/sessions/{session_id}", response_model=SessionRead, responses=problems(404))
async def get_session(session_id: str, actor: AnyActor, container: ContainerDep) -> SessionRead:
    """One session."""
    return _session(await container.sessions.get(session_id, actor=actor))


@router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404)
)
async def delete_session(session_id: str, actor: ChatActor, container: ContainerDep) -> Response:
    """Delete a session and its messages."""
    await container.sessions.delete(session_id, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions/{session_id}/messages", response_model=MessageList, responses=problems(404))
async def list_messages(
    session_id: str, actor: AnyActor, container: ContainerDep, page: PageDep
) -> dict[str, Any]:
    """Message history, oldest first."""
    result = await container.sessions.messages(
        session_id, actor=actor, limit=page.limit, cursor=page.cursor
    )
    return {"items": [message_dict(m) for m in result.items], "next_cursor": result.next_cursor}


@router.post(
    "/sessions/{session_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageRead,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE stream"},
        **problems(404, *PROVIDERS),
    },
)
async def send_message(
    session_id: str,
    body: MessageCreate,
    request: Request,
    actor: ChatActor,
    container: ContainerDep,
    stream: Annotated[bool, Query()] = False,
) -> Response:
    """Ask a question; the answer cites numbered sources. ``?stream=true`` streams SSE.

    The question is stored as the answer starts. If the model fails, the problem (or the
    final SSE ``error`` event) names the stored question in ``message_id``: retry it with
    ``POST /v1/sessions/{session_id}/messages/{message_id}/retry``.
    """
    turn = await container.chat.prepare(
        actor=actor, session_id=session_id, content=body.content, top_k=body.top_k
    )
    return await _answer(container.chat, turn, stream=stream or body.stream, request=request)


@router.post(
    "/sessions/{session_id}/messages/{message_id}/retry",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageRead,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE stream"},
        **problems(404, 409, *PROVIDERS),
    },
)
async def retry_message(
    session_id: str,
    message_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    request: Request,
    actor: ChatActor,
    container: ContainerDep,
    body: MessageRetry | None = None,
    stream: Annotated[bool, Query()] = False,
) -> Response:
    """Answer again a stored question that has none: its generation failed (``status:
    failed``) or its server stopped mid-turn (``pending``). Answers like sending a message;
    409 if the question has an answer already. Nothing new is stored for the question."""
    body = body or MessageRetry()
    turn = await container.chat.prepare_retry(
        actor=actor, session_id=session_id, message_id=message_id, top_k=body.top_k
    )
    return await _answer(container.chat, turn, stream=stream or body.stream, request=request)


async def _answer(
    chat: ChatService, turn: PreparedTurn, *, stream: bool, request: Request
) -> Response:
    """The answer as one JSON message (201) or, if asked for, as server-sent events."""
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _sse(chat, turn), media_type="text/event-stream", headers=SSE_HEADERS
        )
    result = await chat.complete(turn)
    # The hot path returns a plain dict: no response-model validation on every turn.
    return JSONResponse(result.to_dict(), status_code=status.HTTP_201_CREATED)


async def _sse(chat: ChatService, turn: PreparedTurn) -> AsyncIterator[bytes]:
    try:
        async for event, data in chat.stream(turn):
            yield encode_event(event, data)
    except ParleyError as exc:
        # Headers are already sent: report the failure as a final problem event, with what
        # the HTTP answer would carry in headers (``Retry-After``) and the question to retry.
        code = status_for(exc)
        retry_after = getattr(exc, "retry_after_s", None)
        body = problem(
            code,
            code=exc.code,
            detail=exc.public_detail,
            message_id=exc.extra.get("message_id"),
            retry_after=retry_after,
        )
        yield encode_event("error", body)
