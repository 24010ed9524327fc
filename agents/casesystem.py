"""Where an adapter hands verified messages: the agency's own case system.

Agency IT implements :class:`CaseSystem` against their case-management system.
Two implementations ship: :class:`MemoryCaseSystem` (the demo, tests) and
:class:`JsonlCaseSystem`, a local file, mode 0600, inside the agency's own
environment — the only place outside ciphertext where a body may live.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sigbus.agents.runtime import Delivered
from sigbus.transport.files import write_private


class CaseSystem(Protocol):
    async def deliver(self, delivered: Delivered) -> None: ...


@dataclass
class MemoryCaseSystem:
    received: list[Delivered] = field(default_factory=list)

    async def deliver(self, delivered: Delivered) -> None:
        self.received.append(delivered)


@dataclass
class JsonlCaseSystem:
    path: Path

    async def deliver(self, delivered: Delivered) -> None:
        line = (
            json.dumps(
                {
                    "header": delivered.header.model_dump(mode="json"),
                    "release": delivered.record.model_dump(mode="json"),
                    "body": delivered.body.model_dump(mode="json"),
                },
                sort_keys=True,
            )
            + "\n"
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)  # the adapter acks only after this returns
        finally:
            os.close(fd)


@dataclass
class DirectoryCaseSystem:
    """A directory drop: one 0600 JSON file per release, named by its release id.

    Written to a temporary name, fsynced and renamed into place, so a file is
    either whole or absent; a release already dropped is not written again, so a
    redelivery (a crash between the hand-off and the ack) leaves exactly one file.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def deliver(self, delivered: Delivered) -> None:
        release_id = delivered.record.release_id
        final = self.path / f"{release_id}.json"
        if final.exists():
            return
        data = json.dumps(
            {
                "header": delivered.header.model_dump(mode="json"),
                "release": delivered.record.model_dump(mode="json"),
                "body": delivered.body.model_dump(mode="json"),
            },
            sort_keys=True,
        ).encode()
        write_private(final, data)  # whole or absent, durable before the ack
