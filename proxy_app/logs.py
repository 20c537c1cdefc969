"""Logging as JSON lines, secrets redacted: the gateway's own loggers, and (optionally) gunicorn's
access log in the same style.

A record whose message is a dict (the call log's) or text holding a JSON object is written as that
object plus `time`, `level` and `logger`; any other record becomes `{"time", "level", "logger", "message"}`,
its traceback under `exc`. Every message passes through `dheera_ai.redact` once more, so a secret
in an exception's text cannot reach the log either.
"""

from __future__ import annotations

import logging
import time

import orjson

from dheera_ai.redact import redact


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = {"time": _iso(record.created), "level": record.levelname.lower(), "logger": record.name}
        if isinstance(record.msg, dict) and not record.args:
            line = {**head, **record.msg}
        else:
            message = record.getMessage()
            fields = _json_object(message)
            line = {**head, **fields} if fields is not None else {**head, "message": redact(message)}
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


def _json_object(message: str) -> dict | None:
    if not message.startswith("{"):
        return None
    try:
        parsed = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


def configure_logging(debug: bool = False) -> None:
    """Our loggers write JSON lines to stderr (gunicorn's error log), unless the host configured
    logging itself (a root handler exists), in which case records simply propagate to it."""
    logger = logging.getLogger("dheera_ai")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def _gunicorn_logger_base():
    from gunicorn.glogging import Logger  # the master imports this module only when asked to
    return Logger


class AccessLogger(_gunicorn_logger_base()):
    """gunicorn's logger with one JSON line per HTTP request (`gunicorn_settings.logger_class`
    when `DHEERA_AI_ACCESS_LOG` is set). The query string is left out: `/key/info?key=sk-...`."""

    def access(self, resp, req, environ, request_time):
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        headers = dict(resp.headers) if isinstance(resp.headers, list) else {}
        lowered = {k.lower(): v for k, v in headers.items()}
        line = {
            "time": _iso(time.time()),
            "event": "access",
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": redact(environ.get("PATH_INFO", "")),
            "status": int(str(resp.status).split()[0]) if resp.status else None,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "call_id": lowered.get("x-dheera-ai-call-id"),
            "user_agent": redact(environ.get("HTTP_USER_AGENT", "")),
        }
        try:
            self.access_log.info(orjson.dumps(line).decode())
        except Exception:  # a log line must never fail a request
            self.exception("access log line failed")
