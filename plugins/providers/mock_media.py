"""The mock model's deterministic answers for the non-chat families: embeddings from a hash of the
input, a real (tiny) PNG, a real (short, silent) WAV, transcriptions, moderation and rerank scores."""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import zlib

import orjson

DEFAULT_DIMENSIONS = 16
_WORDS = re.compile(r"\w+")
# A word in the input that flags a moderation category (so both outcomes can be tried).
FLAG_WORDS = {"kill": "violence", "hate": "hate", "bomb": "illicit/violent", "steal": "illicit"}
MODERATION_CATEGORIES = ("hate", "hate/threatening", "harassment", "harassment/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
                         "sexual/minors", "violence", "violence/graphic")


def embedding(item, dimensions: int) -> list[float]:
    """A unit vector derived from the input's SHA-256: the same input always gives the same vector."""
    seed = orjson.dumps(item)
    values = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        values += [(b - 127.5) / 127.5 for b in digest]
        counter += 1
    values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


def encoded(vector: list[float], encoding_format: str | None):
    """`base64` is little-endian float32, as OpenAI sends it (the openai SDK asks for it by default)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embedding_inputs(input_) -> list:
    """A string, a list of strings, a token array or a list of token arrays, as a list of inputs."""
    if isinstance(input_, str):
        return [input_]
    if isinstance(input_, list) and input_ and all(isinstance(t, int) for t in input_):
        return [input_]
    return list(input_ or [])


def png(seed: str) -> bytes:
    """A valid 1x1 PNG whose colour depends on `seed`."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes([0, r, g, b])))
            + chunk(b"IEND", b""))


def wav(characters: int, sample_rate: int = 8000) -> bytes:
    """A valid, silent 16-bit mono WAV: 10 ms per character of the input, at least 100 ms."""
    samples = max(sample_rate // 10, characters * sample_rate // 100)
    data = b"\x00\x00" * samples
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


def audio_seconds(size: int) -> float:
    """Seconds of audio in an upload, taken as 16 kHz 16-bit mono (the mock cannot decode audio)."""
    return round(size / 32000, 3)


def transcript(text: str, seconds: float, response_format: str | None, task: str):
    """(body, content type) of a transcription in the requested format."""
    end = _timestamp(max(seconds, 0.001))
    if response_format == "text":
        return text.encode(), "text/plain; charset=utf-8"
    if response_format == "srt":
        return f"1\n00:00:00,000 --> {end.replace('.', ',')}\n{text}\n\n".encode(), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> {end}\n{text}\n\n".encode(), "text/vtt; charset=utf-8"
    if response_format == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [],
                   "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
        return orjson.dumps({"task": task, "language": "english", "duration": seconds, "text": text,
                             "segments": [segment]}), "application/json"
    body = {"text": text}
    if task == "transcribe":
        body["usage"] = {"type": "duration", "seconds": seconds}
    return orjson.dumps(body), "application/json"


def _timestamp(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}"


def moderation(text: str) -> dict:
    words = {w.lower() for w in _WORDS.findall(text)}
    hits = {category for word, category in FLAG_WORDS.items() if word in words}
    return {"flagged": bool(hits),
            "categories": {c: c in hits for c in MODERATION_CATEGORIES},
            "category_scores": {c: 0.9 if c in hits else 0.0001 for c in MODERATION_CATEGORIES},
            "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES}}


def relevance(query: str, document) -> float:
    """The share of the query's words found in the document, nudged apart by a hash to break ties."""
    text = document if isinstance(document, str) else orjson.dumps(document).decode()
    query_words = {w.lower() for w in _WORDS.findall(query)}
    doc_words = {w.lower() for w in _WORDS.findall(text)}
    overlap = len(query_words & doc_words) / (len(query_words) or 1)
    tie_break = hashlib.sha256(text.encode()).digest()[0] / 255 / 1000
    return round(min(1.0, overlap * 0.99 + tie_break), 6)
