"""Files given to `image_edit` and `transcription`, as the pipeline's `Upload`s.

A file may be given as the openai SDK takes it: an open binary file, bytes, a path (str or
`os.PathLike`), or a `(filename, content[, content_type])` tuple. Files the SDK opened itself
are closed when the call is done.
"""

from __future__ import annotations

import io
import mimetypes
import os
from contextlib import contextmanager

from dheera_ai.errors import BadRequestError
from dheera_ai.types import Upload


@contextmanager
def uploads(files):
    """`files` ((form field, file) pairs) as a list of `Upload`s for the duration of a call."""
    opened = []
    try:
        yield [_upload(field, value, opened) for field, value in files]
    finally:
        for f in opened:
            f.close()


def _upload(field: str, value, opened: list) -> Upload:
    content_type = None
    if isinstance(value, tuple) and len(value) in (2, 3):
        filename, content = value[0], value[1]
        content_type = value[2] if len(value) == 3 else None
    else:
        filename, content = None, value
    if isinstance(content, (str, os.PathLike)):
        stream = open(content, "rb")  # noqa: SIM115 - closed by `uploads` when the call is done
        opened.append(stream)
        filename = filename or os.path.basename(os.fspath(content))
    elif isinstance(content, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(content))
    elif hasattr(content, "read"):
        stream = content if _seekable(content) else io.BytesIO(content.read())
        filename = filename or os.path.basename(str(getattr(content, "name", "") or ""))
    else:
        raise BadRequestError(f"'{field}' must be a file, bytes, a path or a (filename, content) tuple.",
                              param=field)
    filename = filename or field
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Upload(field=field, filename=filename, content_type=content_type, stream=stream, size=size)


def _seekable(f) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False
