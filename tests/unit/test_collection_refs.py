"""The collection-reference rule on its own (no database): id, then name, own first."""

from __future__ import annotations

import pytest

from parley.domain.auth import MEMBER_SCOPES, SYSTEM, Principal
from parley.errors import Conflict, NotFound
from parley.repositories.collections import CollectionKey
from parley.services.access import pick_collection

ME = Principal(user_id="me", role="member", scopes=MEMBER_SCOPES)
MINE = CollectionKey("id-mine", "docs", "me")
THEIRS = CollectionKey("id-theirs", "docs", "them")
OTHER = CollectionKey("id-other", "docs", "other")


def test_an_id_wins_over_a_name() -> None:
    named_like_an_id = CollectionKey("id-x", "id-theirs", "me")
    assert pick_collection("id-theirs", [named_like_an_id, THEIRS], actor=ME) == "id-theirs"


def test_a_unique_name_resolves() -> None:
    assert pick_collection("docs", [THEIRS], actor=ME) == "id-theirs"


def test_the_callers_own_wins_a_shared_name() -> None:
    assert pick_collection("docs", [THEIRS, MINE, OTHER], actor=ME) == "id-mine"


def test_several_others_are_a_conflict_listing_ids() -> None:
    with pytest.raises(Conflict) as caught:
        pick_collection("docs", [THEIRS, OTHER], actor=ME, field="collection_ids")
    assert caught.value.extra["candidates"] == ["id-other", "id-theirs"]
    assert caught.value.extra["field"] == "collection_ids"


def test_nothing_readable_is_not_found() -> None:
    with pytest.raises(NotFound, match="'nope'"):
        pick_collection("nope", [MINE], actor=ME)


def test_the_system_principal_owns_ownerless_collections() -> None:
    ownerless = CollectionKey("id-sys", "docs", None)
    assert pick_collection("docs", [THEIRS, ownerless], actor=SYSTEM) == "id-sys"
