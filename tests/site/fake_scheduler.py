"""A stand-in for sbatch/squeue/scancel and qsub/qstat/qdel: records calls, keeps job states.

Run as ``python fake_scheduler.py <command> <args...>`` (the fixture puts one wrapper per
command on PATH). State lives in ``$FAKE_SCHED_DIR/state.json``; every call is appended
to ``$FAKE_SCHED_DIR/calls.jsonl``. ``$FAKE_SCHED_FAIL=<command>`` makes that command fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

HERE = Path(os.environ["FAKE_SCHED_DIR"])
FINISHED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "F"}


def main(command: str, args: list[str]) -> int:
    with open(HERE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state_file = HERE / "state.json"
        state = (
            json.loads(state_file.read_text()) if state_file.exists() else {"next": 100, "jobs": {}}
        )
        with open(HERE / "calls.jsonl", "a") as calls:
            calls.write(json.dumps({"command": command, "args": args}) + "\n")
        if os.environ.get("FAKE_SCHED_FAIL") == command:
            print(
                f"{command}: error: Batch job submission failed: Invalid account", file=sys.stderr
            )
            return 1
        code = COMMANDS[command](state, args)
        state_file.write_text(json.dumps(state))
        return code


def _new(state: dict, args: list[str], first_state: str, suffix: str) -> str:
    number = state["next"]
    state["next"] += 1
    script = Path(args[-1])
    job_id = f"{number}{suffix}"
    state["jobs"][job_id] = {"state": first_state, "script": script.read_text(), "args": args}
    return job_id


def sbatch(state: dict, args: list[str]) -> int:
    print(_new(state, args, "PENDING", ""))
    return 0


def squeue(state: dict, args: list[str]) -> int:
    for job_id, job in state["jobs"].items():
        if job["state"] not in FINISHED:
            print(f"{job_id}|{job['state']}|2|30:00")
    return 0


def scancel(state: dict, args: list[str]) -> int:
    state["jobs"][args[0]]["state"] = "CANCELLED"
    return 0


def qsub(state: dict, args: list[str]) -> int:
    print(_new(state, args, "Q", ".pbs01"))
    return 0


def qstat(state: dict, args: list[str]) -> int:
    ids = [a for a in args if a[0].isdigit()]
    jobs, missing = {}, []
    for job_id in ids:
        job = state["jobs"].get(job_id)
        if job is None or job.get("purged"):
            missing.append(job_id)
            continue
        jobs[job_id] = {"job_state": job["state"], "queue": "debug", "Resource_List": {"nodect": 2}}
    print(json.dumps({"pbs_version": "2022.1", "Jobs": jobs}))
    for job_id in missing:
        print(f"qstat: Unknown Job Id {job_id}", file=sys.stderr)
    return 153 if missing else 0


def qdel(state: dict, args: list[str]) -> int:
    state["jobs"][args[0]]["state"] = "F"
    return 0


COMMANDS = {f.__name__: f for f in (sbatch, squeue, scancel, qsub, qstat, qdel)}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
