"""Column types that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import LargeBinary, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class EmbeddingType(TypeDecorator[bytes]):
    """A vector as float32 bytes in Python; ``BLOB`` on SQLite, pgvector ``vector`` on PostgreSQL.

    Keeping one Python representation lets every layer above ignore the backend.
    """

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """pgvector's type on PostgreSQL (imported only there), bytes elsewhere."""
        if dialect.name == "postgresql":
            from pgvector.sqlalchemy import VECTOR

            return dialect.type_descriptor(VECTOR())
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> Any:
        """float32 bytes → what the column stores."""
        if value is None or dialect.name != "postgresql":
            return value
        return np.frombuffer(value, dtype=np.float32)

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        """What the column stores → float32 bytes."""
        if value is None:
            return None
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return np.asarray(value, dtype=np.float32).tobytes()


class TSVectorType(TypeDecorator[Any]):
    """PostgreSQL ``tsvector``; plain text (always NULL) on other backends."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The native type on PostgreSQL."""
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import TSVECTOR

            return dialect.type_descriptor(TSVECTOR())
        return dialect.type_descriptor(Text())
