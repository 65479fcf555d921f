"""Text neither database can hold, so no query should ever carry it.

PostgreSQL rejects NUL in text values (even as a comparison parameter) and neither driver can
encode an unpaired UTF-16 surrogate (``"\\ud800"``, which JSON can express) as UTF-8. Such a
string reaching a statement fails with a driver error, a 500. The repositories therefore treat
a lookup by such a key as "no such row" (no row can hold it) and refuse to store one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from parley.errors import InvalidInput

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(*values: str | None) -> bool:
    """Whether every (non-None) string can be sent to and stored by both databases."""
    return not any(v is not None and _UNSTORABLE.search(v) for v in values)


def all_storable(values: Iterable[Any]) -> bool:
    """``storable`` over the strings among ``values`` (other types pass)."""
    return all(storable(v) for v in values if isinstance(v, str))


def require_storable(value: str | None, *, field: str) -> None:
    """InvalidInput (422) if ``value`` holds a NUL character or an unpaired surrogate."""
    if not storable(value):
        raise InvalidInput(
            f"{field} contains a NUL character or an unpaired surrogate", field=field
        )
