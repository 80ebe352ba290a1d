"""Lists of Responses items: a response's input items and a conversation's items, paged as OpenAI did."""

from __future__ import annotations

from typing import Any, Iterable

from ..http.errors import APIError
from ..store import ItemEntry, Store


class ItemLists:
    """Items kept in order under an owner (a response or a conversation), found by their own ids."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def check(self, owner: str, items: Iterable[dict[str, Any]]) -> None:
        """A 400 for an item id given twice, or one the list already holds."""
        ids = [item["id"] for item in items]
        repeated = next((i for n, i in enumerate(ids) if i in ids[:n] or self.store.get(ItemEntry, _row(owner, i))), None)
        if repeated is not None:
            raise APIError(400, f"Item {repeated} is already in {owner}; send each item once (a new item needs no "
                           "id).", param="input", code="duplicate_item")

    def add(self, owner: str, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append items (already with ids); an id the list already holds is refused, nothing added."""
        items = list(items)
        self.check(owner, items)
        for item in items:
            self.store.add(ItemEntry(id=_row(owner, item["id"]), item=item), parent=owner)
        return items

    def all(self, owner: str) -> list[dict[str, Any]]:
        """Every item, oldest first."""
        return [entry.item for entry in self.store.children(ItemEntry, owner)]

    def get(self, owner: str, item_id: str) -> dict[str, Any] | None:
        entry = self.store.get(ItemEntry, _row(owner, item_id))
        return entry.item if entry is not None else None

    def delete(self, owner: str, item_id: str) -> None:
        self.store.delete(_row(owner, item_id))

    def page(self, owner: str, *, limit: int, order: str, after: str | None, before: str | None) -> dict[str, Any]:
        """A page in OpenAI's list shape (cursors are item ids)."""
        page = self.store.page(ItemEntry, owner, limit=limit, order=order,
                               after=_row(owner, after) if after else None,
                               before=_row(owner, before) if before else None)
        data = [entry.item for entry in page.data]  # type: ignore[attr-defined]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": page.has_more}


def _row(owner: str, item_id: str) -> str:
    return f"{owner}/{item_id}"
