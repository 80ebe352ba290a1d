"""Conversations: a list of items that responses read as their history and add to."""

from __future__ import annotations

from typing import Any, Iterable

from openai.types.conversations import Conversation

from ..store import Store
from ..wire import new_id, now
from .items import input_items
from .lists import ItemLists


class Conversations:
    """Create, modify and delete conversations; add, list and remove their items."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lists = ItemLists(store)

    def create(self, metadata: dict[str, str] | None = None, items: Iterable[dict[str, Any]] = ()) -> Conversation:
        conversation = Conversation(id=new_id("conversation"), object="conversation", created_at=now(),
                                    metadata=metadata or {})
        first = input_items(list(items))
        self.lists.check(conversation.id, first)  # before anything is kept
        self.store.add(conversation)
        self.add(conversation.id, first)
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
        return self.lists.add(conversation_id, items)

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every item, oldest first (what the next response reads as history)."""
        return self.lists.all(conversation_id)

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        return self.lists.get(conversation_id, item_id)

    def delete_item(self, conversation_id: str, item_id: str) -> None:
        self.lists.delete(conversation_id, item_id)

    def page(self, conversation_id: str, **paging: Any) -> dict[str, Any]:
        """A page of items in OpenAI's list shape (cursors are item ids)."""
        return self.lists.page(conversation_id, **paging)
