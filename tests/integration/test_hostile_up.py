"""Issue #9, "Done when": a hub run with `sigbus up` survives the attacks.

`sigbus up` runs as a real subprocess on a copy of nothing but the README's set-up.
With police's own credentials the test replays the attacks of the issue: the proof
service's answer aimed at the log, another agency's inbox through police's own
consumer, a 2,000-message flood and a header that names the school. Afterwards
nothing landed where police could not write before, the hub still decides (the
school's referral reaches social services), and the exported log verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import date
from pathlib import Path

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from sigbus.agents.setup import agency_setup
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol import subjects as s
from sigbus.transport.bus import INGRESS_BACKLOG, connect
from sigbus.transport.keystore import DEV_KEYS_DIR
from tests.integration.test_no_personnummer import (
    TRUSTED,
    Session,
    witnesses_cosign,
)

P = "police"
FLOOD = 2000


async def _counts(url: str) -> dict[str, int]:
    """Each stream's last sequence (waiting for the starting hub to have made them)."""
    hub = await connect(url, name="observer", creds=hub_setup(DEV_KEYS_DIR).creds)
    js = hub.jetstream()
    try:
        for _ in range(100):
            with contextlib.suppress(NotFoundError):
                return {n: (await js.stream_info(n)).state.last_seq for n in s.ALL_STREAMS}
            await asyncio.sleep(0.1)
        raise AssertionError("the hub never made its streams")
    finally:
        await hub.close()


async def _attack(url: str) -> int:
    """The issue's attacks with police's credentials; returns how many floods got in."""
    police = await connect(url, name="police-attacker", creds=agency_setup(P, DEV_KEYS_DIR).creds)
    try:
        # 1. The proof service's answer aimed at the log, the hub state, school's inbox.
        for reply in (s.LOG_ENTRY_SUBJECT, s.STATE_SUBJECT, s.inbox_subject("school")):
            with contextlib.suppress(NatsError):
                await police.publish(
                    s.service_subject(P, s.PROOF_CONSISTENCY), b'{"old": 1, "new": 2}', reply=reply
                )
        # 3. Police's own consumer pointed at the school's inbox.
        spec = {
            "stream_name": s.INBOX_STREAM,
            "config": {
                "durable_name": s.inbox_consumer(P),
                "ack_policy": "explicit",
                "filter_subject": s.inbox_subject("school"),
            },
        }
        with contextlib.suppress(NatsError, asyncio.TimeoutError):
            answer = await police.request(
                f"{s.HUB_JS_PREFIX}.CONSUMER.CREATE.{s.INBOX_STREAM}.{s.inbox_consumer(P)}",
                json.dumps(spec).encode(),
                timeout=1.0,
            )
            raise AssertionError(f"consumer change answered: {answer.data!r}")
        await police.flush()
        # 4 and 5. A flood, each message's header naming the school and another case.
        js = police.jetstream(prefix=s.HUB_JS_PREFIX)
        forged = json.dumps({"header": {"sender": "school", "case_ref": "case-other"}}).encode()
        accepted = 0
        for i in range(FLOOD):
            with contextlib.suppress(NatsError):
                await js.publish(
                    s.ingress_subject(P), forged, headers={"Nats-Msg-Id": f"flood-{i}"}, timeout=2.0
                )
                accepted += 1
        return accepted
    finally:
        await police.close()


def test_sigbus_up_survives_a_hostile_agency(tmp_path: Path) -> None:
    data, outputs = tmp_path / "data", tmp_path / "outputs"
    outputs.mkdir()
    session = Session(data, outputs)
    pupil = fictitious_personnummer(birth_date_for_age(date.today(), 14), 985)
    with session.up():
        url = json.loads((data / "sigbus-up.json").read_text())["nats_url"]
        before = asyncio.run(_counts(url))
        accepted = asyncio.run(_attack(url))
        assert INGRESS_BACKLOG <= accepted < FLOOD  # the rest were refused at the bus
        # The hub keeps deciding: a school referral reaches social services.
        # It waits for its decision notice behind the flood's decisions.
        session.run("school", "refer", "--reason", "school_absence",
                    "--evidence-id", "dnr-s5678", "--timeout", "60",
                    stdin=pupil + "\n")  # fmt: skip
        for _ in range(120):
            if "referral" in session.run("social", "inbox"):
                break
        else:
            raise AssertionError("the school's referral was never released")
        after = asyncio.run(_counts(url))
        witnesses_cosign(session, tmp_path / "case-systems", after[s.LOG_STREAM])
        export = data / "log-export.jsonl"
        session.run("audit", "export", "--out", str(export))
        verified = session.run("audit", "verify", str(export), *TRUSTED)
        assert verified.startswith("VERIFIED / VERIFIERAD"), verified
    # Nothing landed where police could not write: the hub state is untouched, the
    # inbox holds only the school's release and each sender's decision notices (the
    # school's, and one in the police's own inbox per flood message), the log only
    # the decisions.
    assert after[s.STATE_STREAM] == before[s.STATE_STREAM]
    assert after[s.INBOX_STREAM] == before[s.INBOX_STREAM] + 1 + 1 + accepted
    assert after[s.LOG_STREAM] == before[s.LOG_STREAM] + accepted + 1
    lines = export.read_text().splitlines()
    entries = [e for e in map(json.loads, lines[1:]) if "message_id" in e]
    assert len(entries) == accepted + 1
    floods = [e for e in entries if e["message_id"].startswith("ingress-")]
    assert len(floods) == accepted
    assert all(e["sender"] == P for e in floods)  # blamed on the publisher, not on "school"
    assert b"log_fenced" not in (outputs / "up.stderr").read_bytes()
