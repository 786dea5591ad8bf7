"""Command building: app-run flavours, launch_params, the job script, environment (pure)."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest

from balsam_mq.launcher.command import direct_argv, job_environment, job_script, preamble_text
from balsam_mq.launcher.platform import AppRun, launcher_argv, wrap_command


def test_mpich_and_openmpi_argv() -> None:
    run = AppRun(("n1", "n2"), ranks_per_node=4, launch_params={"bind-to": "core", "-l": ""})
    assert launcher_argv("mpich", run) == [
        "mpiexec", "-n", "8", "-ppn", "4", "-hosts", "n1,n2", "--bind-to", "core", "-l",
    ]  # fmt: skip
    assert launcher_argv("openmpi", run, mpiexec_exe="/opt/ompi/bin/mpiexec") == [
        "/opt/ompi/bin/mpiexec", "-n", "8", "--npernode", "4", "--host", "n1:4,n2:4",
        "--bind-to", "core", "-l",
    ]  # fmt: skip


def test_srun_argv() -> None:
    run = AppRun(("a", "b"), ranks_per_node=2, threads_per_rank=8, gpus_per_rank=1)
    assert launcher_argv("srun", run) == [
        "srun", "-N", "2", "-n", "4", "--ntasks-per-node", "2", "--cpus-per-task", "8",
        "--gpus-per-task", "1", "--nodelist", "a,b",
    ]  # fmt: skip


def test_local_runs_one_rank_directly_and_more_through_mpiexec() -> None:
    assert wrap_command("local", AppRun(("me",)), "./sim -i in.dat") == "./sim -i in.dat"
    wrapped = wrap_command("local", AppRun(("me",), ranks_per_node=2), "python x.py")
    assert wrapped == "mpiexec -n 2 python x.py"


def test_same_host_twice_is_not_passed_as_a_host_list() -> None:
    argv = launcher_argv("mpich", AppRun(("vm", "vm")))
    assert argv == ["mpiexec", "-n", "2", "-ppn", "1"]


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown app-run flavour 'aprun'"):
        launcher_argv("aprun", AppRun(("a",)))


def test_preamble_accepts_a_string_or_a_list() -> None:
    assert preamble_text("\n   module load x\n  export A=1\n") == "module load x\nexport A=1"
    assert preamble_text(["module load x", "export A=1"]) == "module load x\nexport A=1"
    assert preamble_text("") == "" and preamble_text(None) == ""


def test_job_script_runs_preamble_then_command_in_one_bash() -> None:
    script = job_script("export A=1", "mpiexec -n 2 ./sim")
    lines = script.splitlines()
    assert lines[1] == "export A=1"
    assert lines[2] == "mpiexec -n 2 ./sim &" and lines[3] == "wait $!"
    assert shlex.split(lines[0])[0] == "trap"


def test_job_environment_precedence() -> None:
    env = job_environment(
        site_env={"A": "site", "B": "site"},
        app_env={"B": "app", "CUDA_VISIBLE_DEVICES": "9"},
        gpu_ids=("2", "3"),
        threads_per_rank=4,
        job_id=7,
    )
    assert env == {
        "A": "site",
        "B": "app",
        "OMP_NUM_THREADS": "4",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "BALSAM_JOB_ID": "7",
    }


def test_serial_mode_workers_are_one_unbound_rank_per_node() -> None:
    from balsam_mq.launcher.workers import MpiWorkers

    srun = MpiWorkers(count=2, hosts=["a", "b"], app_run="srun", cores_per_node=64).argv()
    assert srun[:10] == [
        "srun", "-N", "2", "-n", "2", "--ntasks-per-node", "1", "--cpus-per-task", "64",
        "--nodelist",
    ]  # fmt: skip
    assert "--cpu-bind" in srun and srun[-3:-1] == ["-m", "balsam_mq.launcher.serial_worker"]
    ompi = MpiWorkers(count=2, hosts=["a", "b"], app_run="openmpi").argv()
    assert ompi[:8] == ["mpiexec", "-n", "2", "--npernode", "1", "--host", "a:1,b:1", "--bind-to"]
    local = MpiWorkers(count=3).argv()  # a workstation playing three nodes
    assert local[:5] == ["mpiexec", "-n", "3", "-ppn", "1"] and "-hosts" not in local


def test_a_run_app_with_its_own_python_takes_the_fresh_interpreter_path(tmp_path: Path) -> None:
    from launcher_helpers import python_app_class

    from balsam_mq.domain import App, Job, Resources
    from balsam_mq.domain.serialization import serialize_app, serialize_parameters
    from balsam_mq.launcher.config import LauncherConfig
    from balsam_mq.launcher.nodes import Placement
    from balsam_mq.launcher.prepare import Preparer

    cls = python_app_class("class Add:\n    def run(self, x):\n        return x\n", "Add")
    preparer = Preparer(LauncherConfig(site_id=1, data_dir=tmp_path, wall_time_min=1))
    placement = Placement(7, (0,), (socket.gethostname(),), ((),))  # on the launcher's host
    job = Job(id=7, app_id=1, site_id=1, workdir="a/7", parameters=serialize_parameters({"x": 1}))
    mine = App(id=1, site_id=1, name="Add", serialized_class=serialize_app(cls, what="Add"))
    other = mine.model_copy(update={"python_exe": "/opt/py 3/bin/python"})
    default = preparer.prepare(job, mine, placement)
    assert default.python and default.spec.warm  # runs in a warm worker: no spec file
    assert default.spec.python_run is not None and default.spec.python_run["job_id"] == 7
    assert not (tmp_path / "a/7/.balsam_run.json").exists()
    custom = preparer.prepare(job, other, placement)
    assert "'/opt/py 3/bin/python' -m balsam_mq.launcher.python_runner" in custom.spec.script
    assert not custom.spec.warm  # not the launcher's interpreter: a fresh one
    wide = job.model_copy(update={"resources": Resources(ranks_per_node=2)})
    spec = preparer.prepare(wide, mine, placement).spec
    assert not spec.warm
    spec.write_run_spec()  # what an executor running the script does first
    assert (tmp_path / "a/7/.balsam_run.json").is_file()


def test_workdirs_stay_inside_the_data_directory(tmp_path: Path) -> None:
    from balsam_mq.domain import Job
    from balsam_mq.errors import JobError
    from balsam_mq.launcher.config import LauncherConfig
    from balsam_mq.launcher.prepare import Preparer

    data = tmp_path / "data"
    (data / "runs").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (data / "runs" / "sneaky").symlink_to(tmp_path / "outside")
    (data / "runs" / "alias").symlink_to(data / "runs")
    preparer = Preparer(LauncherConfig(site_id=1, data_dir=data, wall_time_min=1))

    def workdir(path: str) -> Path:
        return preparer.workdir(Job(id=1, app_id=1, site_id=1, workdir=path))

    assert workdir("runs/1") == data.resolve() / "runs" / "1"
    assert workdir("runs/2") == data.resolve() / "runs" / "2"  # the parent, once resolved
    assert workdir("runs/alias") == data.resolve() / "runs"  # a link inside is followed
    for escape in ("../elsewhere", "runs/../../elsewhere", "runs/sneaky", "/etc"):
        with pytest.raises(JobError, match="escapes the site's data directory"):
            workdir(escape)


def test_only_simple_commands_without_a_preamble_skip_the_shell() -> None:
    assert direct_argv("", "true") == ("true",)
    assert direct_argv("", "mpiexec -n 8 -ppn 4 -hosts n1,n2 ./sim -i in.dat") == (
        "mpiexec", "-n", "8", "-ppn", "4", "-hosts", "n1,n2", "./sim", "-i", "in.dat",
    )  # fmt: skip
    for needs_bash in (
        'echo "Hello, world!"',
        "sleep 1 && echo done",
        "sim > out.txt",
        "FOO=1 sim",
        "echo $HOME",
        "ls *.dat",
        "a | b",
        "",
    ):
        assert direct_argv("", needs_bash) == ()
    assert direct_argv("module load sim", "sim") == ()  # a preamble runs in the shell first
