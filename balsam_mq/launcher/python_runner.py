"""The child side of a ``run()`` app: ``python -m balsam_mq.launcher.python_runner <spec file>``.

Started in the job's workdir (under mpiexec/srun for several ranks), or called in a warm
worker (:func:`run_spec`). It loads the app class and the job's parameters from the
spec the launcher wrote, calls ``run()``, and rank 0 reports the serialized return
value, or the exception and its traceback: in the result file named in the spec, or
to the warm worker. The exit code is 0 after a return and 1 after an exception, on
every rank, so the launcher sees RUN_DONE or RUN_ERROR.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "PALS_RANKID")


def mpi_rank() -> int:
    """This process's rank in its MPI launch (0 when not launched by MPI)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    mpi = getattr(sys.modules.get("mpi4py"), "MPI", None)
    if mpi is not None:
        try:
            return int(mpi.COMM_WORLD.Get_rank())
        except Exception:
            return 0
    return 0


def is_sdk_app(cls: type) -> bool:
    """Whether ``cls`` is an ``ApplicationDefinition`` (else a plain class with a ``run()``)."""
    from balsam_mq.sdk.definition import definition_base

    return definition_base(cls) is not None


def make_app(cls: type, job: Any) -> Any:
    """An instance of the app class with ``self.job`` set, as the SDK builds it for hooks."""
    if is_sdk_app(cls):
        from balsam_mq.sdk.app import app_for_job

        return app_for_job(cls, job)
    instance: Any = object.__new__(cls)
    instance.job = job
    return instance


def call_run(app: Any, parameters: Mapping[str, Any]) -> Any:
    """``app.run()`` called with the job's parameters, bound as the SDK defines it
    (``*args`` take the list given for their name: ``dims=[5]`` → ``run(5)``)."""
    from balsam_mq.sdk.definition import run_arguments

    args, kwargs = run_arguments(type(app), parameters)
    return app.run(*args, **kwargs)


def run_spec(
    spec: Mapping[str, Any],
    *,
    classes: MutableMapping[Any, type] | None = None,
    print_traceback: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Run the job ``spec`` describes: ``(exit code, {"result"} or {"exception", "traceback"})``.

    ``classes`` keeps loaded app classes by app id and version across calls (a warm
    worker's cache). An exception's traceback is also printed, to the job's output.
    """
    from balsam_mq.domain.serialization import (
        deserialize_app,
        deserialize_parameters,
        serialize_exception,
        serialize_result,
    )

    what = f"Job {spec['job_id']} of App {spec['app_name']!r}"
    try:
        from balsam_mq.domain import Job

        key = (spec.get("app_id"), spec.get("app_version"))
        cls = classes.get(key) if classes is not None and key[1] else None
        if cls is None:
            cls = deserialize_app(spec["serialized_class"], what=f"App {spec['app_name']!r}")
            if classes is not None and key[1]:
                classes[key] = cls
        job = Job.model_validate(spec["job"])
        parameters = deserialize_parameters(spec["parameters"], what=f"{what}: parameters")
        for name, default in spec.get("defaults", {}).items():
            parameters.setdefault(name, default)
        value = call_run(make_app(cls, job), parameters)
        return 0, {"result": serialize_result(value, what=f"{what}: return value")}
    except Exception as exc:
        if print_traceback:
            traceback.print_exc()
        serialized, text = serialize_exception(exc, what=f"{what}: exception")
        return 1, {"exception": serialized, "traceback": text}


def _write(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    rank = mpi_rank()
    try:
        code, payload = run_spec(spec, print_traceback=rank == 0)
        if rank == 0:
            _write(Path(spec["result_file"]), payload)
        return code
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m balsam_mq.launcher.python_runner <spec file>", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
