"""What a chat-only deployment needs to answer Responses follow-ups (GET, input_items,
`previous_response_id`): the stored response, its input items and the conversation so far.

Each response belongs to its owner (the key that made it); asked for by anyone else, it is not
there. This one is in-process and bounded (oldest first out), for the SDK; the gateway keeps
them in its state store (`proxy_app.store.responses`), so any worker or instance can answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_RESPONSES = 10_000


class ResponseStore:
    def __init__(self, limit: int = MAX_RESPONSES):
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def put(self, response_id: str, response: dict, input_items: list, messages: list,
            owner: str | None = None) -> None:
        with self._lock:
            self._items[response_id] = {"response": response, "input_items": input_items, "messages": messages,
                                        "owner": owner}
            self._items.move_to_end(response_id)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def get(self, response_id: str, owner: str | None = None) -> dict | None:
        with self._lock:
            return self._owned(response_id, owner)

    def delete(self, response_id: str, owner: str | None = None) -> bool:
        with self._lock:
            if self._owned(response_id, owner) is None:
                return False
            del self._items[response_id]
            return True

    def _owned(self, response_id: str, owner: str | None) -> dict | None:
        stored = self._items.get(response_id)
        return stored if stored is not None and stored["owner"] == owner else None
