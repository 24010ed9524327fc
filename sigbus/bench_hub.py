"""The bench's hub in its own process, as it is deployed (`sigbus broker run`).

`python -m sigbus.bench_hub KEYS URL [PROFILE]` starts a hub on the log, prints
``ready`` on stdout once it serves, and runs until SIGTERM; with PROFILE it
writes a cProfile of its event loop's thread there. A separate process matters
for the figures: in one process the hub and the three adapters share one
interpreter lock, so the bench would measure one core where a deployment has two.
"""

from __future__ import annotations

import asyncio
import cProfile
import signal
import sys
from pathlib import Path

from sigbus.broker.setup import hub_setup
from sigbus.transport.logging import configure_logging


async def serve(keys: Path, url: str, profile_path: Path | None) -> None:
    broker = hub_setup(keys).broker(url)
    await broker.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, broker.request_stop)
    profile = cProfile.Profile() if profile_path is not None else None
    print("ready", flush=True)
    if profile is not None:
        profile.enable()
    try:
        await broker.run()
    finally:
        if profile is not None and profile_path is not None:
            profile.disable()
            profile.dump_stats(str(profile_path))


if __name__ == "__main__":
    configure_logging(level="error")  # as `sigbus bench` runs: overload refusals are counted
    args = sys.argv[1:]
    asyncio.run(serve(Path(args[0]), args[1], Path(args[2]) if len(args) > 2 else None))
