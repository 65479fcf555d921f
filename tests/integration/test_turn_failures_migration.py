"""Revision 0005 on SQLite and PostgreSQL: stored answers are linked to their questions,
and the revision goes down and up again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, text

from parley.db import migrate
from parley.db.session import create_engine
from parley.settings import Settings

_T = datetime(2026, 1, 1, tzinfo=UTC)


async def test_existing_answers_point_to_their_questions_and_the_revision_reverses(
    tmp_path: Path, database_url: str | None
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database_url)  # type: ignore[call-arg]
    engine, _ = create_engine(settings)
    try:
        await migrate.upgrade(engine, "0004")
        async with engine.begin() as conn:
            for sid in ("s1", "s2"):
                await conn.execute(
                    text(
                        "INSERT INTO sessions (id, title, collection_ids, created_at)"
                        " VALUES (:id, NULL, '[]', :t)"
                    ),
                    {"id": sid, "t": _T},
                )
            # Two sessions' turns interleaved, as concurrent sessions store them.
            for mid, sid, role in [
                (1, "s1", "user"),
                (2, "s1", "assistant"),
                (3, "s2", "user"),
                (4, "s2", "assistant"),
                (5, "s1", "user"),
                (6, "s2", "user"),
                (7, "s1", "assistant"),
                (8, "s2", "assistant"),
            ]:
                await conn.execute(
                    text(
                        "INSERT INTO messages (id, session_id, role, content, sources,"
                        " token_count, input_tokens, output_tokens, created_at)"
                        " VALUES (:id, :sid, :role, 'x', '[]', 1, 0, 0, :t)"
                    ),
                    {"id": mid, "sid": sid, "role": role, "t": _T},
                )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            links = (
                await conn.execute(text("SELECT id, reply_to_id FROM messages ORDER BY id"))
            ).all()
            indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("messages"))
        assert links == [(1, None), (2, 1), (3, None), (4, 3), (5, None), (6, None), (7, 5), (8, 6)]
        assert {"name": "ux_messages_reply_to_id", "unique": True} in [
            {"name": i["name"], "unique": bool(i["unique"])} for i in indexes
        ]
        await migrate.downgrade(engine, "0004")
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: inspect(c).get_columns("messages"))
            count = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one()
        assert not {"reply_to_id", "error_code"} & {c["name"] for c in columns}
        assert count == 8  # going down keeps the messages
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
