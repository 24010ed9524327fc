"""The reviewers' findings: an append-only, hash-chained JSON Lines file (0600, fsynced).

``<data-dir>/console-findings.jsonl``; each record is chained by ``audit.review``
(``prev`` = the hash of the record before, ``hash`` = SHA-256 of the record's RFC
8785 form), so an edited, dropped or reordered finding breaks the chain at that
record (:func:`sigbus.audit.review.check_findings`). The chain is hashed, not
signed: whoever can write the file can rewrite all of it consistently, so the
head shown on the review page is to be copied into the review report.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from sigbus.audit.review import chain_finding, check_findings

#: Longest reviewer's note; it is free text, so a personnummer in it is refused.
MAX_NOTE = 500


class FindingsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x]

    def head(self) -> str:
        """The chain's head; raises ``FindingsError`` if the file's chain is broken."""
        return check_findings(self.read())

    def append(self, finding: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            records = self.read()
            check_findings(records)  # never extend a broken chain
            record = chain_finding(records[-1] if records else None, finding)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return record
