"""Parked messages: what the dead-letter queue holds, and replaying or discarding it.

A message a site's consumer failed to handle ``max_attempts`` times is parked, and the
jobs it announced fail with a reason naming the queue and the error (their
``state_data["parked"]`` says which message). Replaying it returns those jobs to the
state they were parked in, so they are handled again; discarding it leaves them FAILED.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection
from typing import Any

from balsam_mq.domain import ParkedMessage
from balsam_mq.errors import NotFound
from balsam_mq.sdk import refs
from balsam_mq.sdk.client import get_client


class DeadLetters:
    """The dead-letter queue of the current client's deployment.

    Example::

        for message in await DeadLetters.list(site="polaris"):
            print(message.message_id, message.queue, message.job_ids, message.summary)
        await DeadLetters.retry([message.message_id])  # after fixing the cause
        await DeadLetters.purge()  # discard every parked message
    """

    @staticmethod
    async def list(limit: int | None = None, *, site: Any = None) -> builtins.list[ParkedMessage]:
        """Parked messages, oldest first; ``site`` (a name, id or Site): only its messages."""
        client = await get_client()
        messages = await client.backend.parked(None if site is not None else limit)
        if site is not None:
            ids = set(await refs.site_ids(client, site))
            messages = [m for m in messages if m.site_id in ids][:limit]
        return messages

    @staticmethod
    async def get(message_id: str) -> ParkedMessage:
        """The parked message ``message_id`` (:class:`~balsam_mq.errors.NotFound` if none)."""
        for message in await DeadLetters.list():
            if message.message_id == message_id:
                return message
        raise NotFound(f"no parked message {message_id} (see `balsam-mq dead ls`)")

    @staticmethod
    async def retry(message_ids: Collection[str] | None = None) -> builtins.list[ParkedMessage]:
        """Replay these parked messages (all of them by default); returns those replayed."""
        client = await get_client()
        return await client.backend.replay_parked(_ids(message_ids))

    @staticmethod
    async def purge(message_ids: Collection[str] | None = None) -> builtins.list[ParkedMessage]:
        """Discard these parked messages (all of them by default); their jobs stay FAILED."""
        client = await get_client()
        return await client.backend.purge_parked(_ids(message_ids))


def _ids(message_ids: Collection[str] | None) -> set[str] | None:
    if isinstance(message_ids, str):  # one id, not its characters
        return {message_ids}
    return None if message_ids is None else set(message_ids)
