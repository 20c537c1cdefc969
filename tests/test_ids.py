"""Call and spend-row ids: UUIDv7, so they sort by time and the store's indexes grow at one end."""

import time
import uuid

from dheera_ai import ids


def test_call_ids_are_version_7_uuids_in_the_usual_text_form():
    text = ids.call_id()
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_carry_the_time_and_sort_by_it():
    before = int(time.time() * 1000)
    earlier = ids.uuid7()
    time.sleep(0.002)
    later = ids.uuid7()
    after = int(time.time() * 1000)
    assert before <= earlier.int >> 80 <= later.int >> 80 <= after
    assert earlier.hex < later.hex


def test_ids_do_not_repeat_within_a_millisecond():
    made = [ids.row_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(len(r) == 32 and uuid.UUID(r).version == 7 for r in made[:100])


def test_a_gateway_call_id_is_one(client, auth):
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert uuid.UUID(response.headers["x-dheera-ai-call-id"]).version == 7
