"""What a chat-only deployment needs to answer Responses follow-ups (GET, input_items,
`previous_response_id`): the stored response, its input items and the conversation so far.

In-process and bounded (oldest first out): a follow-up must reach the worker that made the
response. The shared state store will replace this.
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

    def put(self, response_id: str, response: dict, input_items: list, messages: list) -> None:
        with self._lock:
            self._items[response_id] = {"response": response, "input_items": input_items, "messages": messages}
            self._items.move_to_end(response_id)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> dict | None:
        with self._lock:
            return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._items.pop(response_id, None) is not None
