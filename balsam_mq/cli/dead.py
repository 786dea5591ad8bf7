"""`balsam-mq dead`: parked messages (the dead-letter queue): list, show, replay, discard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from balsam_mq.cli.common import JsonOption, confirm, fail, run, site_filter
from balsam_mq.cli.output import note, print_json, show_fields, show_table

if TYPE_CHECKING:
    from balsam_mq.domain import ParkedMessage

app = typer.Typer(
    help="Messages a site could not handle (parked), and replaying or discarding them.",
    no_args_is_help=True,
)

Ids = Annotated[
    list[str] | None,
    typer.Argument(help="Message ids (from `balsam-mq dead ls`).", show_default=False),
]
All = Annotated[bool, typer.Option("--all", help="Every parked message.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@app.command("ls")
def ls(
    site: Annotated[
        str | None,
        site_filter("messages"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N messages (0: all).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List parked messages, oldest first: their queue, jobs, attempts and last error.

    A message is parked after its queue's consumer failed on it max_attempts times;
    the jobs it announced are FAILED with a reason naming it.

    Example:  balsam-mq dead ls --site polaris
    """

    async def main() -> list[ParkedMessage]:
        from balsam_mq.sdk import DeadLetters

        return await DeadLetters.list(limit or None, site=None if site == "all" else site)

    messages = run(main)
    if as_json:
        print_json([parked_json(m) for m in messages])
        return
    if not messages:
        note("no parked messages")
        return
    show_table(
        ["id", "queue", "jobs", "attempts", "parked", "error"],
        [
            [m.message_id, m.queue, _jobs(m), str(m.attempts), m.parked_at, m.summary]
            for m in messages
        ],
    )


@app.command("show")
def show(
    message_id: Annotated[str, typer.Argument(help="A message id from `balsam-mq dead ls`.")],
    as_json: JsonOption = False,
) -> None:
    """Show one parked message in full: its routing key, jobs and error traceback.

    Example:  balsam-mq dead show 6650c1f2a4e1b2c3d4e5f601
    """

    async def main() -> ParkedMessage:
        from balsam_mq.sdk import DeadLetters

        return await DeadLetters.get(message_id)

    message = run(main)
    if as_json:
        print_json(parked_json(message, full=True))
        return
    show_fields(
        [
            ("id", message.message_id),
            ("queue", message.queue),
            ("routing key", message.routing_key),
            ("jobs", _jobs(message)),
            ("attempts", str(message.attempts)),
            ("parked", message.parked_at),
        ]
    )
    typer.echo(message.error.rstrip())


@app.command("retry")
def retry(ids: Ids = None, every: All = False, as_json: JsonOption = False) -> None:
    """Replay parked messages, after fixing what made them fail.

    The jobs a message failed go back to the state they were parked in and are
    handled again.

    Example:  balsam-mq dead retry 6650c1f2a4e1b2c3d4e5f601
    """
    chosen = _chosen(ids, every)

    async def main() -> list[ParkedMessage]:
        from balsam_mq.sdk import DeadLetters

        return await DeadLetters.retry(chosen)

    _report("replayed", run(main), as_json)


@app.command("purge")
def purge(
    ids: Ids = None, every: All = False, yes: Yes = False, as_json: JsonOption = False
) -> None:
    """Discard parked messages; the jobs they failed stay FAILED.

    Example:  balsam-mq dead purge --all --yes
    """
    chosen = _chosen(ids, every)
    confirm(
        "discard every parked message?" if chosen is None else f"discard {len(chosen)} message(s)?",
        yes,
    )

    async def main() -> list[ParkedMessage]:
        from balsam_mq.sdk import DeadLetters

        return await DeadLetters.purge(chosen)

    _report("discarded", run(main), as_json)


def _chosen(ids: list[str] | None, every: bool) -> list[str] | None:
    """The ids named, or ``None`` for --all; naming both or neither is an error."""
    if every and ids:
        fail("give message ids or --all, not both", code=2)
    if not every and not ids:
        fail("give the ids of the messages (see `balsam-mq dead ls`), or --all", code=2)
    return None if every else list(ids or [])


def _report(done: str, messages: list[ParkedMessage], as_json: bool) -> None:
    if as_json:
        print_json([parked_json(m) for m in messages])
        return
    jobs = sorted({j for m in messages for j in m.job_ids})
    note(f"{done} {len(messages)} message(s)" + (f" (jobs {_ids(jobs)})" if jobs else ""))


def _jobs(message: ParkedMessage) -> str:
    return _ids(message.job_ids) or "-"


def _ids(ids: list[int], most: int = 8) -> str:
    shown = ", ".join(str(i) for i in ids[:most])
    return f"{shown}, ... ({len(ids)})" if len(ids) > most else shown


def parked_json(message: ParkedMessage, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": message.message_id,
        "queue": message.queue,
        "routing_key": message.routing_key,
        "site_id": message.site_id,
        "job_ids": message.job_ids,
        "attempts": message.attempts,
        "parked_at": message.parked_at,
        "error": message.error if full else message.summary,
    }
    return out
