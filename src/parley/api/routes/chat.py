"""Search, sessions and chat turns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from parley.api.deps import ContainerDep, PageDep
from parley.api.errors import problem, status_for
from parley.api.schemas.chat import (
    MessageCreate,
    MessageList,
    MessageRead,
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
        collection_ids=list(r.collection_ids),
        message_count=view.message_count,
        created_at=r.created_at,
    )


@router.post("/search", response_model=SearchResponse)
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


@router.post("/sessions", status_code=status.HTTP_201_CREATED, response_model=SessionRead)
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


@router.get("/sessions/{session_id}", response_model=SessionRead)
async def get_session(session_id: str, actor: AnyActor, container: ContainerDep) -> SessionRead:
    """One session."""
    return _session(await container.sessions.get(session_id, actor=actor))


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: str, actor: ChatActor, container: ContainerDep) -> Response:
    """Delete a session and its messages."""
    await container.sessions.delete(session_id, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions/{session_id}/messages", response_model=MessageList)
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
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
)
async def send_message(
    session_id: str,
    body: MessageCreate,
    request: Request,
    actor: ChatActor,
    container: ContainerDep,
    stream: Annotated[bool, Query()] = False,
) -> Response:
    """Ask a question; the answer cites numbered sources. ``?stream=true`` streams SSE."""
    wants_stream = stream or body.stream or "text/event-stream" in request.headers.get("accept", "")
    turn = await container.chat.prepare(
        actor=actor, session_id=session_id, content=body.content, top_k=body.top_k
    )
    if wants_stream:
        return StreamingResponse(
            _sse(container.chat, turn),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    result = await container.chat.complete(turn)
    # The hot path returns a plain dict: no response-model validation on every turn.
    return JSONResponse(result.to_dict(), status_code=status.HTTP_201_CREATED)


async def _sse(chat: ChatService, turn: PreparedTurn) -> AsyncIterator[bytes]:
    try:
        async for event, data in chat.stream(turn):
            yield encode_event(event, data)
    except ParleyError as exc:
        # Headers are already sent: report the failure as a final problem event.
        code = status_for(exc)
        yield encode_event("error", problem(code, code=exc.code, detail=exc.public_detail))
