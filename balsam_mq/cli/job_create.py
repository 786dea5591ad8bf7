"""`balsam-mq job create`: one job from the command line, its parameters checked against
its app's."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from balsam_mq.cli.common import JsonOption, parse_json_object, parse_pairs, run
from balsam_mq.cli.job_views import Listing, job_json, job_line
from balsam_mq.cli.output import print_json


def create(
    app_ref: Annotated[str, typer.Option("--app", "-a", help="The app (name or id).")],
    workdir: Annotated[str, typer.Option("--workdir", help="Relative to the site's data/.")],
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="A parameter key=value; the value is JSON if it parses."
        ),
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag key=value.")] = None,
    parents: Annotated[
        list[int] | None, typer.Option("--parent", help="Run after this job finishes.")
    ] = None,
    transfers: Annotated[
        list[str] | None, typer.Option("--transfer", help="A transfer slot=alias:/path.")
    ] = None,
    data_json: Annotated[
        str | None, typer.Option("--data-json", help="The job's data, a JSON object.")
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", "-s", help="The app's site, if its name is ambiguous.")
    ] = None,
    num_nodes: Annotated[
        int | None, typer.Option("--num-nodes", "-n", min=1, help="Nodes the job runs on.")
    ] = None,
    ranks_per_node: Annotated[
        int | None, typer.Option("--ranks-per-node", min=1, help="MPI ranks on each node.")
    ] = None,
    threads_per_rank: Annotated[
        int | None,
        typer.Option("--threads-per-rank", min=1, help="Threads of each rank (OMP_NUM_THREADS)."),
    ] = None,
    threads_per_core: Annotated[
        int | None,
        typer.Option("--threads-per-core", min=1, help="Hardware threads used per core."),
    ] = None,
    gpus_per_rank: Annotated[
        float | None,
        typer.Option("--gpus-per-rank", min=0, help="GPUs each rank holds (may be a fraction)."),
    ] = None,
    node_packing_count: Annotated[
        int | None,
        typer.Option(
            "--node-packing-count", min=1, help="At most this many such jobs share a node."
        ),
    ] = None,
    wall_time_min: Annotated[
        int | None,
        typer.Option("--wall-time-min", min=0, help="The run's expected minutes (0: unknown)."),
    ] = None,
    launch_params: Annotated[
        list[str] | None, typer.Option("--launch-param", help="A launcher option key=value.")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries", min=0, help="Restarts after failed runs, over the app's max_retries."
        ),
    ] = None,
    retry_backoff_s: Annotated[
        float | None,
        typer.Option(
            "--retry-backoff", min=0, help="Seconds before the first restart (doubling after)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a job; its parameters are checked against the app's.

    Example:  balsam-mq job create --app Adder --workdir test/1 -p x=5 -p y=5 --tag run=demo
    """
    optional: dict[str, Any] = {  # None: the default (the app's, for the retry policy)
        "num_nodes": num_nodes,
        "ranks_per_node": ranks_per_node,
        "threads_per_rank": threads_per_rank,
        "threads_per_core": threads_per_core,
        "gpus_per_rank": gpus_per_rank,
        "node_packing_count": node_packing_count,
        "wall_time_min": wall_time_min,
        "max_retries": max_retries,
        "retry_backoff_s": retry_backoff_s,
    }
    fields: dict[str, Any] = {
        "parameters": parse_pairs(params, "--param", json_values=True),
        "tags": parse_pairs(tags, "--tag"),
        "data": parse_json_object(data_json, "--data-json"),
        "parent_ids": list(parents or []),
        "transfers": parse_pairs(transfers, "--transfer"),
        "launch_params": parse_pairs(launch_params, "--launch-param"),
        **{k: v for k, v in optional.items() if v is not None},
    }

    async def main() -> dict[str, Any]:
        from balsam_mq.sdk import Job

        job = Job(
            workdir, app_id=int(app_ref) if app_ref.isdigit() else app_ref, site=site, **fields
        )
        await job.save()
        listing = await Listing.of([job])
        return job_json(job, listing)

    document = run(main)
    if as_json:
        print_json(document)
        return
    typer.echo(f"created {job_line(document)}")
