"""A multipart/form-data body built as it is sent: files are read in blocks from where they lie
(memory or a temporary file), never joined into one buffer, and the length is known up front so
the upstream gets a `Content-Length` rather than a chunked upload."""

from __future__ import annotations

import uuid

from dheera_ai.types import Upload

BLOCK = 64 * 1024


class MultipartBody:
    """Text fields and uploads as one iterable body; `len()` is its exact size in bytes."""

    def __init__(self, fields: dict, files: list[Upload]):
        self.boundary = "dheera-" + uuid.uuid4().hex
        # A list is a repeated field (`timestamp_granularities[]`, `include[]`).
        self._fields = [(name, item) for name, value in fields.items() if value is not None
                        for item in (value if isinstance(value, list) else [value])]
        self._files = files
        self._length = sum(len(self._field_part(n, v)) for n, v in self._fields)
        self._length += sum(len(self._file_head(f)) + f.size + 2 for f in files)
        self._length += len(self._closing())

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        for name, value in self._fields:
            yield self._field_part(name, value)
        for upload in self._files:
            yield self._file_head(upload)
            upload.stream.seek(0)
            while True:
                block = upload.stream.read(BLOCK)
                if not block:
                    break
                yield block
            yield b"\r\n"
        yield self._closing()

    def _field_part(self, name: str, value) -> bytes:
        text = value if isinstance(value, str) else ("true" if value is True else "false" if value is False
                                                     else str(value))
        return (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{_quoted(name)}\"\r\n\r\n"
                f"{text}\r\n").encode()

    def _file_head(self, upload: Upload) -> bytes:
        return (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{_quoted(upload.field)}\"; "
                f"filename=\"{_quoted(upload.filename)}\"\r\nContent-Type: {upload.content_type}\r\n\r\n").encode()

    def _closing(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()


def _quoted(text: str) -> str:
    """A name safe inside a quoted header parameter (browsers percent-encode these three)."""
    return text.replace("\\", "%5C").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
