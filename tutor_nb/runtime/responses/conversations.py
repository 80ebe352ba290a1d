"""Conversations: a list of items that responses read as their history and add to."""

from __future__ import annotations

from typing import Any, Iterable

from openai.types.conversations import Conversation

from ..store import ConversationEntry, Store
from ..wire import new_id, now
from .items import input_items


class Conversations:
    """Create, modify and delete conversations; add, list and remove their items."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, metadata: dict[str, str] | None = None, items: Iterable[dict[str, Any]] = ()) -> Conversation:
        conversation = Conversation(id=new_id("conversation"), object="conversation", created_at=now(),
                                    metadata=metadata or {})
        self.store.add(conversation)
        self.add(conversation.id, input_items(list(items)))
        return conversation

    def get(self, conversation_id: str) -> Conversation | None:
        return self.store.get(Conversation, conversation_id)

    def update(self, conversation: Conversation, metadata: dict[str, str]) -> Conversation:
        conversation.metadata = metadata
        self.store.save(conversation)
        return conversation

    def delete(self, conversation_id: str) -> None:
        self.store.delete(conversation_id)

    def add(self, conversation_id: str, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append items (already with ids) to the conversation."""
        added = []
        for item in items:
            self.store.add(ConversationEntry(id=_row(conversation_id, item["id"]), item=item), parent=conversation_id)
            added.append(item)
        return added

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every item, oldest first (what the next response reads as history)."""
        return [entry.item for entry in self.store.children(ConversationEntry, conversation_id)]

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        entry = self.store.get(ConversationEntry, _row(conversation_id, item_id))
        return entry.item if entry is not None else None

    def delete_item(self, conversation_id: str, item_id: str) -> None:
        self.store.delete(_row(conversation_id, item_id))

    def page(self, conversation_id: str, *, limit: int, order: str, after: str | None,
             before: str | None) -> dict[str, Any]:
        """A page of items in OpenAI's list shape (cursors are item ids)."""
        page = self.store.page(ConversationEntry, conversation_id, limit=limit, order=order,
                               after=_row(conversation_id, after) if after else None,
                               before=_row(conversation_id, before) if before else None)
        data = [entry.item for entry in page.data]  # type: ignore[attr-defined]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": page.has_more}


def _row(conversation_id: str, item_id: str) -> str:
    return f"{conversation_id}/{item_id}"
