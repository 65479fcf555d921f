"""Questions stored before their answer: answers point back to them; failures are marked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 04:30:00

``messages.reply_to_id`` links an assistant message to the user message it answers (unique:
one answer per question); ``messages.error_code`` marks a question whose last generation
failed. Existing answers are linked to the message just before them, which is how they were
always stored (question and answer in one statement).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The message just before each message of its session (correlated on the updated row).
_PREVIOUS = (
    "SELECT {column} FROM messages AS previous"
    " WHERE previous.session_id = messages.session_id AND previous.id < messages.id"
    " ORDER BY previous.id DESC LIMIT 1"
)
_LINK_EXISTING_ANSWERS = (
    f"UPDATE messages SET reply_to_id = ({_PREVIOUS.format(column='previous.id')})"
    f" WHERE role = 'assistant' AND ({_PREVIOUS.format(column='previous.role')}) = 'user'"
)


def upgrade() -> None:
    op.add_column("messages", sa.Column("reply_to_id", sa.BigInteger(), nullable=True))
    op.add_column("messages", sa.Column("error_code", sa.String(64), nullable=True))
    op.execute(_LINK_EXISTING_ANSWERS)
    op.create_index("ux_messages_reply_to_id", "messages", ["reply_to_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_messages_reply_to_id", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("error_code")
        batch.drop_column("reply_to_id")
