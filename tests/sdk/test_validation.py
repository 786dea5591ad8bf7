"""Every rule of an app definition is a clear error at sync() naming the app and the field;
every bad job input is refused at submit time, before anything is stored."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.errors import AppError, JobError, SerializationError
from balsam_mq.sdk import App, Client, Site


def app(**attributes: Any) -> type[ApplicationDefinition]:
    """A fresh app class named Sim at polaris with ``attributes``."""
    namespace: dict[str, Any] = {"site": "polaris", "command_template": "sim {{ x }}"}
    namespace.update(attributes)
    return type("Sim", (ApplicationDefinition,), namespace)


LABEL = "App 'Sim' at site 'polaris'"

SYNC_ERRORS = [
    (
        {"parameters": {"bad-name": {"required": True}}},
        f"{LABEL}: parameter 'bad-name' is not a valid Python identifier",
    ),
    (
        {"parameters": {"x": {"required": True, "default": 1}}},
        f"{LABEL}: parameter 'x' is required but has a default",
    ),
    (
        {"parameters": {"mode": {"required": False}}},
        f"{LABEL}: parameter 'mode' is optional but has no default",
    ),
    (
        {"parameters": {"x": {"required": "yes"}}},
        f"{LABEL}: parameter 'x': 'required' must be True or False",
    ),
    (
        {"parameters": {"x": {"required": True, "kind": "int"}}},
        f"{LABEL}: parameter 'x': unknown key(s) ['kind']",
    ),
    (
        {"parameters": {"x": {"required": False, "default": {1, 2}}}},
        f"{LABEL}: parameter 'x': default must be plain data",
    ),
    (
        {"transfers": {"inp": {"direction": "sideways", "local_path": "in"}}},
        f"{LABEL}: transfer slot 'inp': direction must be 'in' or 'out', got 'sideways'",
    ),
    (
        {"transfers": {"inp": {"direction": "in", "local_path": "/abs/in"}}},
        f"{LABEL}: transfer slot 'inp': local_path '/abs/in' must be relative to the job workdir",
    ),
    (
        {"transfers": {"inp": {"direction": "in", "local_path": "../up"}}},
        f"{LABEL}: transfer slot 'inp': local_path '../up' must be relative to the job workdir",
    ),
    (
        {"transfers": {"inp": {"direction": "in", "local_path": "d", "recursive": "yes"}}},
        f"{LABEL}: transfer slot 'inp': recursive must be True or False, got 'yes'",
    ),
    (
        {"transfers": {"inp": {"direction": "in"}}},
        f"{LABEL}: transfer slot 'inp': local_path must be a non-empty path, got None",
    ),
    ({"command_template": None}, f"{LABEL}: define either command_template or run()"),
    ({"command_template": "sim {{ x "}, f"{LABEL}: command_template line 1:"),
    ({"site": None}, "App 'Sim' at site None: the site attribute is required"),
    ({"cleanup_files": "*.h5"}, f"{LABEL}: cleanup_files must be a list of glob patterns"),
    ({"environment_variables": {"A": 1}}, f"{LABEL}: environment variable 'A' must be a str"),
]


@pytest.mark.parametrize(("attributes", "message"), SYNC_ERRORS)
async def test_a_bad_definition_is_refused_at_sync(
    memory: Client, memory_site: Site, attributes: dict[str, Any], message: str
) -> None:
    with pytest.raises(AppError) as info:
        await app(**attributes).sync()
    assert str(info.value).startswith(message)
    assert await App.objects.filter(name="Sim").count() == 0


async def test_valid_slots_and_template_names_missing_from_the_spec(
    memory: Client, memory_site: Site
) -> None:
    Sim = app(
        command_template="sim {{ x }} {{ mode }}",
        parameters={"mode": {"required": False, "default": "fast"}},
        transfers={"here": {"direction": "in", "local_path": ".", "recursive": True}},
    )
    await Sim.sync()
    (stored,) = await App.objects.filter(name="Sim")
    assert stored.parameters["x"].required  # named by the template, absent from the spec
    assert not stored.parameters["mode"].required
    assert stored.transfers["here"].local_path == "." and not stored.transfers["here"].required


def test_command_template_and_run_together_fail_at_class_definition() -> None:
    with pytest.raises(AppError, match=r"App 'Both' at site 'polaris': define either command_t"):

        class Both(ApplicationDefinition):
            site = "polaris"
            command_template = "echo"

            def run(self) -> None:
                pass


async def test_a_class_over_100_kb_is_refused_with_its_size(
    memory: Client, memory_site: Site
) -> None:
    Big = app(blob="x" * 120_000)
    with pytest.raises(SerializationError, match=rf"{LABEL}: serialized size 1\d\d,\d\d\d bytes"):
        await Big.sync()


def runner() -> type[ApplicationDefinition]:
    class Runner(ApplicationDefinition):
        site = "polaris"
        transfers = {
            "deck": {"required": True, "direction": "in", "local_path": "input.nw"},
            "extra": {"required": False, "direction": "out", "local_path": "extra"},
        }

        def run(self, x, y=2, *rest):  # type: ignore[no-untyped-def]
            return x

    return Runner


DECK = {"deck": "laptop:/data/input.nw"}
SUBMIT_ERRORS = [
    ({"transfers": DECK}, r"missing required parameter\(s\) 'x'"),
    ({"x": 1, "z": 2, "transfers": DECK}, r"unknown parameter\(s\) 'z' \(known: x, y, rest\)"),
    ({"x": 1}, r"required transfer slot\(s\) 'deck' not filled"),
    ({"x": 1, "transfers": {**DECK, "other": "a:/b"}}, r"unknown transfer slot\(s\) 'other'"),
    (
        {"x": 1, "transfers": {"deck": "/data/input.nw"}},
        r"transfer 'deck': '/data/input.nw' is not a URI of the form alias:/absolute/path",
    ),
    (
        {"x": 1, "transfers": {"deck": "laptop:data/input.nw"}},
        r"transfer 'deck': 'laptop:data/input.nw' is not a URI",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), SUBMIT_ERRORS)
async def test_bad_inputs_are_refused_at_submit(
    memory: Client, memory_site: Site, kwargs: dict[str, Any], message: str
) -> None:
    Runner = runner()
    with pytest.raises(JobError, match=r"Job 'w/1' of App 'Runner' at site 'polaris': " + message):
        Runner.submit("w/1", save=False, **kwargs)
    with pytest.raises(JobError, match=message):
        await Runner.submit("w/1", **kwargs)
    assert await Job.objects.count() == 0


async def test_inputs_of_jobs_naming_their_app_are_checked_before_saving(
    memory: Client, memory_site: Site
) -> None:
    await runner().sync()
    with pytest.raises(JobError, match=r"Job 'w/2' of App 'Runner' at site 'polaris': missing"):
        await Job.objects.bulk_create(
            [
                Job("w/1", app_id="Runner", parameters={"x": 1}, transfers=DECK),
                Job("w/2", app_id="Runner", parameters={}, transfers=DECK),
            ]
        )
    assert await Job.objects.count() == 0


async def test_run_signature_is_the_parameter_spec(memory: Client, memory_site: Site) -> None:
    Runner = runner()
    job = await Runner.submit("w/1", x=1, rest=[3, 4], transfers=DECK)
    assert job.parameters == {"x": 1, "rest": [3, 4]}
    assert Runner(job)._run_with({"x": 5, "rest": [3]}) == 5

    class Open(ApplicationDefinition):
        site = "polaris"

        def run(self, **kwargs):  # type: ignore[no-untyped-def]
            return kwargs

    assert Open(job)._run_with({"anything": 1}) == {"anything": 1}
    await Open.submit("w/open", anything=1, other="ok")


def test_job_fields_are_checked_when_the_job_is_built() -> None:
    Runner = runner()
    with pytest.raises(JobError, match=r"Job 'w/1': field 'num_nodes': Input should be greater"):
        Job("w/1", app_id=Runner, num_nodes=0)
    with pytest.raises(JobError, match=r"Job workdir '/abs' must be relative"):
        Job("/abs", app_id=Runner)
    with pytest.raises(JobError, match=r"app_id is required"):
        Job("w/1")
    job = Job("w/1", app_id=Runner)
    with pytest.raises(JobError, match=r"Job 'w/1': unknown job state 'DONE'"):
        job.state = "DONE"


class Adder(ApplicationDefinition):
    site = "polaris"

    def run(self, x, y):  # type: ignore[no-untyped-def]
        return x + y


@pytest.fixture
def open_socket() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        yield sock


Given = Callable[[socket.socket], dict[str, Any]]  # the job fields, from an open socket
BAD_VALUES = [
    pytest.param(
        lambda _: {"tags": ["a"]},
        r"tags must be a mapping of str to str, got a list \['a'\]",
        id="tags-list",
    ),
    pytest.param(
        lambda _: {"data": [1]}, r"data must be a mapping with str keys, got a list", id="data-list"
    ),
    pytest.param(
        lambda _: {"data": {"s": {1, 2}}},
        r"data\['s'\] is a set \{1, 2\}, which MongoDB cannot store",
        id="data-set",
    ),
    pytest.param(
        lambda s: {"data": {"k": [{"sock": s}]}},
        r"data\['k'\]\[0\]\['sock'\] is a socket <socket.socket",
        id="data-socket",
    ),
    pytest.param(
        lambda _: {"data": {"n": 2**70}},
        r"data\['n'\] is an int \d+: MongoDB can only handle up to 8-byte ints",
        id="data-bigint",
    ),
    pytest.param(
        lambda _: {"data": {"s": "x" * 17_000_000}},
        r"data takes 17,000,0\d\d bytes as stored, over the limit of 4,194,304 bytes \(4 MiB\)",
        id="data-too-large",
    ),
    pytest.param(
        lambda _: {"num_nodes": "2"},
        r"field 'num_nodes': expected an integer, got the string '2'",
        id="num_nodes-str",
    ),
    pytest.param(
        lambda _: {"wall_time_min": "5"},
        r"field 'wall_time_min': expected an integer, got the string '5'",
        id="wall_time_min-str",
    ),
    pytest.param(
        lambda _: {"num_nodes": True},
        r"field 'num_nodes': expected an integer, got a bool True",
        id="num_nodes-bool",
    ),
    pytest.param(
        lambda _: {"num_nodes": 2.0},
        r"field 'num_nodes': expected an integer, got a float 2.0",
        id="num_nodes-float",
    ),
    pytest.param(
        lambda _: {"gpus_per_rank": "1"},
        r"field 'gpus_per_rank': expected a number, got the string '1'",
        id="gpus_per_rank-str",
    ),
    pytest.param(
        lambda _: {"parent_ids": "12"},
        r"parent_ids must be a list of job ids, got the string '12'",
        id="parent_ids-str",
    ),
]


@pytest.mark.parametrize(("given", "message"), BAD_VALUES)
async def test_bad_job_values_are_refused_at_the_call_naming_the_field(
    either: tuple[Client, Site, object],
    open_socket: socket.socket,
    given: Given,
    message: str,
) -> None:
    """On either backend: the library's own error, naming the job, the field and why,
    before anything is stored (MongoDB would refuse some, or store "2" as 2)."""
    fields = given(open_socket)
    with pytest.raises(JobError, match=r"^Job 'w/1': " + message):
        Adder.submit("w/1", x=1, y=2, save=False, **fields)
    with pytest.raises(JobError, match=r"^Job 'w/1': " + message):
        await Adder.submit("w/1", x=1, y=2, **fields)
    with pytest.raises(JobError, match=r"^Job 'w/2': " + message):
        Job("w/2", app_id=Adder, parameters={"x": 1, "y": 2}, **fields)
    assert await Job.objects.count() == 0


async def test_values_changed_in_place_are_refused_at_save_and_bulk_create(
    either: tuple[Client, Site, object], open_socket: socket.socket
) -> None:
    jobs = [Adder.submit(f"w/{i}", x=i, y=1, save=False) for i in range(3)]
    jobs[1].data["sock"] = open_socket
    with pytest.raises(JobError, match=r"^Job 'w/1': data\['sock'\] is a socket"):
        await Job.objects.bulk_create(jobs)
    with pytest.raises(JobError, match=r"^Job 'w/1': data\['sock'\] is a socket"):
        await jobs[1].save()
    assert await Job.objects.count() == 0
    del jobs[1].data["sock"]
    await Job.objects.bulk_create(jobs)
    job = jobs[0]
    job.data["seen"] = {1}
    with pytest.raises(JobError, match=rf"^Job {job.id}: data\['seen'\] is a set"):
        await job.save()
    job.data["seen"] = "x" * (5 * 2**20)
    with pytest.raises(JobError, match=rf"^Job {job.id}: data takes 5,242,8\d\d bytes as stored"):
        await job.save()
    with pytest.raises(JobError, match=r"Job query update: data\['seen'\] is a set"):
        await Job.objects.filter(id=job.id).update(**{"data.seen": {1}})
    with pytest.raises(JobError, match=r"Job query update: field 'num_nodes': expected an int"):
        await Job.objects.filter(id=job.id).update(num_nodes="3")
    await job.refresh()
    assert job.data == {} and job.num_nodes == 1


async def test_a_bad_assignment_is_refused_at_once_and_spoils_no_later_save(
    either: tuple[Client, Site, object], open_socket: socket.socket
) -> None:
    job = await Adder.submit("w/1", x=1, y=2, tags={"run": "a"})
    bad: list[tuple[str, Any, str]] = [
        ("tags", {"a": 2}, r"tags must map str to str, got 'a': 2"),
        ("tags", ["a"], r"tags must be a mapping of str to str, got a list"),
        ("data", {1, 2}, r"data must be a mapping with str keys, got a set \{1, 2\}"),
        ("data", {"sock": open_socket}, r"data\['sock'\] is a socket"),
        ("state_data", {"s": {1}}, r"state_data\['s'\] is a set"),
        ("num_nodes", "3", r"field 'num_nodes': expected an integer, got the string '3'"),
        ("launch_params", {"a": 1}, r"field 'launch_params.a': expected a string, got an int 1"),
        ("return_code", "1", r"field 'return_code': expected an integer, got the string '1'"),
        ("workdir", "/etc", r"workdir '/etc' must be relative to the site's data directory"),
    ]
    for name, value, message in bad:
        with pytest.raises(JobError, match=rf"^Job {job.id}: {message}"):
            setattr(job, name, value)
    assert job.tags == {"run": "a"} and job.num_nodes == 1  # the values the job had
    job.num_nodes = 3
    await job.save()  # nothing of the refused values comes back to haunt another field
    await job.refresh()
    assert (job.num_nodes, job.tags, job.data) == (3, {"run": "a"}, {})
