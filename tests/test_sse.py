"""Reading foreign event streams: named events, CRLF line ends (Google's), events split across reads."""

from dheera_ai.sse import parse_events, relay_named_events


def test_events_are_parsed_whatever_the_line_ends_and_read_boundaries():
    raw = (b"event: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
           b": a comment\n\n"
           b"data: {\"b\":\n"
           b"data: 2}\n\n"
           b"data: [DONE]")
    pieces = [raw[i:i + 7] for i in range(0, len(raw), 7)]

    assert list(parse_events(pieces)) == [("message_start", '{"a": 1}'), ("", '{"b":\n2}'), ("", "[DONE]")]


def test_a_relayed_stream_is_unchanged_and_every_event_is_seen():
    raw = b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"
    seen = []
    out = b"".join(relay_named_events([raw[:5], raw[5:20], raw[20:]], lambda name, data: seen.append((name, data))))

    assert out == raw
    assert seen == [("a", "1"), ("b", "2")]
