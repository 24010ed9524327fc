"""Adapters apply the hub's retention schedule to their outbox, processed store and file
sinks (issue 13): a referral goes after 180 days, a meeting notice stays until 730."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sigbus.agents.casesystem import DirectoryCaseSystem, JsonlCaseSystem
from sigbus.agents.outbox import Outbox
from sigbus.agents.retention import apply_retention
from sigbus.policy.rules import default_rules
from sigbus.protocol.ids import MessageType

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _doc(kind: str, release_id: str) -> bytes:
    return json.dumps(
        {
            "header": {"type": kind},
            "release": {"released_at": T0.isoformat(), "release_id": release_id},
        }
    ).encode()


def test_outbox_processed_and_sinks_follow_the_schedule(tmp_path: Path) -> None:
    rules = default_rules()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for mid, kind in (("msg-ref", "referral"), ("msg-meet", "meeting_notice")):
        outbox.put(
            mid,
            "sigbus.ingress.police",
            "d" * 64,
            json.dumps({"header": {"type": kind}}).encode(),
            T0,
        )
        outbox.mark_delivered(mid, 1, T0)
    outbox.put("msg-pending", "sigbus.ingress.police", "e" * 64, b"{}", T0)  # never sent: kept
    outbox.mark_processed("rel-ref", "msg-x", T0, MessageType.REFERRAL)
    outbox.mark_processed("rel-meet", "msg-y", T0, MessageType.MEETING_NOTICE)
    jsonl = JsonlCaseSystem(tmp_path / "releases.jsonl")
    jsonl.path.write_bytes(
        _doc("referral", "rel-ref") + b"\n" + _doc("meeting_notice", "rel-meet") + b"\n"
    )
    drop = DirectoryCaseSystem(tmp_path / "drop")
    (drop.path / "rel-ref.json").write_bytes(_doc("referral", "rel-ref"))
    (drop.path / "rel-meet.json").write_bytes(_doc("meeting_notice", "rel-meet"))

    early = apply_retention(rules, T0 + timedelta(days=179), outbox=outbox, sink=jsonl)
    assert (early.outbox, early.processed, early.documents) == (0, 0, 0)
    late = T0 + timedelta(days=181)
    result = apply_retention(rules, late, outbox=outbox, sink=jsonl)
    assert (result.outbox, result.processed, result.documents) == (1, 1, 1)
    assert outbox.get("msg-ref") is None
    assert outbox.get("msg-meet") is not None
    assert outbox.get("msg-pending") is not None
    assert not outbox.is_processed("rel-ref")
    assert outbox.is_processed("rel-meet")
    assert b"rel-ref" not in jsonl.path.read_bytes()
    assert b"rel-meet" in jsonl.path.read_bytes()
    assert apply_retention(rules, late, outbox=None, sink=drop).documents == 1
    assert sorted(p.name for p in drop.path.iterdir()) == ["rel-meet.json"]
    # No trace of the referral is left in the SQLite file's bytes (deleted and vacuumed).
    outbox.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite*"))
    assert b"msg-ref" not in raw
    assert b"rel-ref" not in raw


class _Part:
    def __init__(self, **fields: object) -> None:
        self.fields = fields
        self.release_id = str(fields.get("release_id", ""))

    def model_dump(self, mode: str) -> dict[str, object]:
        return dict(self.fields)


class _Delivered:
    """What the sink reads of a delivery: header, record (with its release id), body."""

    def __init__(self, release_id: str) -> None:
        self.header = _Part(type="referral", message_id=f"msg-{release_id}")
        self.record = _Part(released_at=T0.isoformat(), release_id=release_id)
        self.body = _Part(kind="referral")


async def test_the_jsonl_sink_hands_a_release_on_once_across_a_restart(tmp_path: Path) -> None:
    """A SIGKILL after the append and before the processed store: the redelivery finds
    the release already in the file (the window `sigbus soak` found)."""
    path = tmp_path / "releases.jsonl"
    first = JsonlCaseSystem(path)
    await first.deliver(_Delivered("rel-a"))  # type: ignore[arg-type]
    await first.deliver(_Delivered("rel-a"))  # type: ignore[arg-type]
    again = JsonlCaseSystem(path)  # the restarted adapter's sink
    await again.deliver(_Delivered("rel-a"))  # type: ignore[arg-type]
    await again.deliver(_Delivered("rel-b"))  # type: ignore[arg-type]
    ids = [json.loads(line)["release"]["release_id"] for line in path.read_text().splitlines()]
    assert ids == ["rel-a", "rel-b"]
