"""The fallback for a missed reload request: poll the store every WEIGHTS_POLL_SECONDS."""

from __future__ import annotations

import asyncio
import logging

from ltr_serving.state import ServingState

log = logging.getLogger("ltr_serving.poller")


async def poll_forever(state: ServingState, interval_s: float) -> None:
    """Never returns and never dies on an error; only cancellation (shutdown) stops it.

    Each check runs in a worker thread (a stat, and on a change a full reload) so the event
    loop keeps serving requests.
    """
    log.info("poller started", extra={"interval_s": interval_s})
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(state.poll_once)
        except asyncio.CancelledError:
            raise
        except Exception:  # reload() already turns artifact errors into refusals; this is the rest
            log.exception("poll failed; will retry next interval")
