"""Structured logs: one JSON object per line, to the node's log file and stderr.

Log records carry an event name and scalar fields; callers never pass payload bytes, record
contents, names or national ids (tests scan the files nodes write). Use
``log.info("raft.leader", extra={"fields": {"term": 3}})`` or the :func:`event` helper.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOGGER_NAME = "medledger"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, node, event and fields."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "node": self.node_id,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if k not in doc})
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["error"] = repr(record.exc_info[1])[:500]
        return json.dumps(doc, default=str)


def setup_logging(node_id: str, log_file: Path, level: str) -> logging.Logger:
    """Send the medledger logger to *log_file* (append) and stderr as JSON lines."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.setLevel(level.upper())
    logger.propagate = False
    formatter = JsonFormatter(node_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    for handler in (
        logging.FileHandler(log_file, encoding="utf-8"),
        logging.StreamHandler(sys.stderr),
    ):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log event *name* with scalar *fields*."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
