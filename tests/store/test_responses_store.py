"""Translated Responses in the state store: found by their owner only, expiring, bounded."""

import time

from proxy_app.store.responses import StoredResponses


def test_a_response_is_found_by_its_owner_only_until_deleted(store):
    kept = StoredResponses(store)
    kept.put("resp_1", {"id": "resp_1"}, [{"id": "msg_1"}], [{"role": "user", "content": "Hi"}], owner="key-a")
    assert kept.get("resp_1", owner="key-a") == {"response": {"id": "resp_1"}, "input_items": [{"id": "msg_1"}],
                                                 "messages": [{"role": "user", "content": "Hi"}]}
    assert kept.get("resp_1", owner="key-b") is None and kept.get("resp_1") is None
    assert kept.delete("resp_1", owner="key-b") is False
    assert kept.delete("resp_1", owner="key-a") is True
    assert kept.get("resp_1", owner="key-a") is None and kept.delete("resp_1", owner="key-a") is False


def test_responses_expire_and_the_oldest_go_past_the_bound(store):
    brief = StoredResponses(store, ttl_seconds=0.2)
    brief.put("resp_old", {}, [], [], owner="k")
    time.sleep(0.3)
    assert brief.get("resp_old", owner="k") is None

    bounded = StoredResponses(store, max_rows=3, prune_every=1)
    for index in range(5):
        bounded.put(f"resp_{index}", {}, [], [], owner="k")
        time.sleep(0.01)
    assert [bounded.get(f"resp_{i}", owner="k") is not None for i in range(5)] == [False, False, True, True, True]
