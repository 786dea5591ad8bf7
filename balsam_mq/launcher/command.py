"""A job's command line, preamble and environment, as the launcher runs them (pure functions)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from balsam_mq.domain import App

PYTHON_RUNNER = "balsam_mq.launcher.python_runner"
RUN_SPEC_FILE = ".balsam_run.json"
RESULT_FILE = ".balsam_result.json"


def with_defaults(app: App, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The job's parameters, plus the spec's default for each optional one not given."""
    merged = {name: spec.default for name, spec in app.parameters.items() if not spec.required}
    merged.update(parameters)
    return merged


def python_command(python_exe: str) -> str:
    """The child command of a ``run()`` app, started in the job's workdir."""
    return f"{shlex.quote(python_exe)} -m {PYTHON_RUNNER} {RUN_SPEC_FILE}"


def preamble_text(preamble: str | Sequence[str] | None) -> str:
    """``shell_preamble()``'s value (a multi-line string or a list of lines) as script text."""
    if preamble is None:
        return ""
    if isinstance(preamble, str):
        lines = preamble.splitlines()
    else:
        lines = [str(line) for line in preamble]
    return "\n".join(line.strip() for line in lines if line.strip())


def job_script(preamble: str, command: str) -> str:
    """The bash script of one run: the preamble, then the (wrapped) command.

    The command runs in the background and bash waits for it, so a SIGTERM to bash
    (the launcher dying: see ``runs.py``) is handled at once and passed to the whole
    process group instead of leaving the command orphaned.
    """
    lines = ["trap 'trap - TERM INT; kill -TERM 0 2>/dev/null' TERM INT"]
    if preamble:
        lines.append(preamble)
    lines.append(f"{command} &")
    lines.append("wait $!")
    return "\n".join(lines) + "\n"


# characters that make a command line need a shell (quoting, expansion, redirection,
# pipes, lists, assignments, comments...)
_SHELL_SYNTAX = frozenset("|&;<>()$`\\\"'*?[]#~=%{}!\n\t")


def direct_argv(preamble: str, command: str) -> tuple[str, ...]:
    """The command as an argument vector to execute without a shell, or ``()`` if it needs
    one (a preamble to run first, or any shell syntax in the line)."""
    if preamble or not command.strip() or any(c in _SHELL_SYNTAX for c in command):
        return ()
    return tuple(command.split())


def job_environment(
    *,
    site_env: Mapping[str, str],
    app_env: Mapping[str, str],
    gpu_ids: Sequence[str],
    threads_per_rank: int,
    job_id: int,
) -> dict[str, str]:
    """Variables set for a run on top of the node's own environment.

    Order of precedence: per-job GPU assignment > the app's ``environment_variables``
    > the site's environment.
    """
    env = dict(site_env)
    env["OMP_NUM_THREADS"] = str(threads_per_rank)
    env.update(app_env)
    env["BALSAM_JOB_ID"] = str(job_id)
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    return env
