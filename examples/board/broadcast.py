"""The board's live channels, on ``triolette.broadcast``.

Card changes go to ``FEED`` (the server-sent events at ``/events``) and chat lines to
``CHAT`` (the WebSocket at ``/chat``), as JSON text. ``BOARD_BROADCAST_URL`` picks the
engine: ``memory://`` (the default) for one process, ``redis://host:6379/0`` so that
``--workers 2``, or two machines, share one feed and one chat.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from triolette.broadcast import Broadcast, BroadcastUnavailable

FEED = "board:cards"
CHAT = "board:chat"
logger = logging.getLogger("examples.board")


def broadcast_url() -> str:
    """``$BOARD_BROADCAST_URL``, else ``memory://``."""
    return os.environ.get("BOARD_BROADCAST_URL") or "memory://"


async def announce(broadcast: Broadcast, channel: str, event: dict[str, Any]) -> None:
    """Publish ``event``; if Redis is down the change is saved but not announced (at most once)."""
    try:
        await broadcast.publish(channel, json.dumps(event))
    except BroadcastUnavailable as exc:
        logger.warning("not announced: %s", exc)
