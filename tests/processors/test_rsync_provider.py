"""The batched rsync provider against a real sshd on a loopback port and the real rsync: one
rsync process per call whatever the number of items, items missing or failing one by one,
and a daemon that goes away reported on every item without raising.

The "remote" host is this machine: remote paths live under a tmp prefix.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import anyio
import pytest
from support.sshd import SshServer, ssh_server
from support.waiting import until

from balsam_mq.errors import ConfigError, JobError
from balsam_mq.processors.batches import Item
from balsam_mq.processors.rsync import RsyncLocation, pull, push


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def remote_root(tmp_path: Path) -> Path:
    root = tmp_path / "remote"
    root.mkdir()
    return root


@pytest.fixture
def location(sshd: SshServer, remote_root: Path) -> RsyncLocation:
    return RsyncLocation.parse(f"rsync://{sshd.user}@127.0.0.1:{sshd.port}{remote_root}")


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "staging"


@pytest.fixture
def rsync_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each rsync process started appends a line here: a wrapper named ``rsync`` first on
    PATH that execs the real one (it counts processes; it fakes nothing)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "rsync.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "rsync"
    wrapper.write_text(f'#!/bin/sh\necho "$$ $*" >> {log}\nexec /usr/bin/rsync "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log.touch()
    return log


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tree_of(root: Path) -> dict[str, str]:
    """Relative path -> content (files) or "<dir>" (directories) below ``root``."""
    return {
        str(p.relative_to(root)): "<dir>" if p.is_dir() else p.read_text()
        for p in sorted(root.rglob("*"))
    }


def assert_staging_empty(staging: Path) -> None:
    assert not staging.exists() or list(staging.iterdir()) == []


def processes_running(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found


async def test_pull_of_200_files_into_200_workdirs_is_one_rsync_process(
    sshd: SshServer,
    location: RsyncLocation,
    remote_root: Path,
    tmp_path: Path,
    staging: Path,
    rsync_log: Path,
) -> None:
    items = []
    for i in range(200):
        write(remote_root / f"inputs/group{i % 20}/sample{i}.txt", f"sample {i}\n" * (i + 1))
        items.append(
            Item(
                key=(i, "input"),
                remote=location.remote(f"/inputs/group{i % 20}/sample{i}.txt"),
                local=tmp_path / f"work/job{i}/in/sample.txt",
                recursive=False,
            )
        )

    batch = await pull(location, items, ssh_command=sshd.ssh_command, staging=staging)

    assert batch.processes == 1
    assert len(rsync_log.read_text().splitlines()) == 1
    assert batch.returncode == 0
    assert batch.task_id.startswith("rsync-")
    assert batch.started_at.tzinfo is not None and batch.started_at <= batch.finished_at
    assert [r.key for r in batch.items] == [(i, "input") for i in range(200)]
    for i, result in enumerate(batch.items):
        assert (result.done, result.missing, result.error) == (True, False, None)
        content = f"sample {i}\n" * (i + 1)
        assert result.bytes == len(content)
        assert (tmp_path / f"work/job{i}/in/sample.txt").read_text() == content
    assert (remote_root / "inputs/group0/sample0.txt").exists()  # a pull copies
    assert_staging_empty(staging)


async def test_one_source_pulled_to_several_places_and_inside_a_pulled_tree(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    write(remote_root / "shared/params.json", "{}")
    write(remote_root / "shared/more.txt", "more")
    params = location.remote("/shared/params.json")
    items = [
        Item("a", params, tmp_path / "a/params.json", recursive=False),
        Item("b", params, tmp_path / "b/params.json", recursive=False),
        Item("tree", location.remote("/shared"), tmp_path / "c/shared", recursive=True),
    ]

    batch = await pull(location, items, ssh_command=sshd.ssh_command, staging=staging)

    assert [r.done for r in batch.items] == [True, True, True]
    assert (tmp_path / "a/params.json").read_text() == "{}"
    assert (tmp_path / "b/params.json").read_text() == "{}"
    assert tree_of(tmp_path / "c/shared") == {"more.txt": "more", "params.json": "{}"}


async def test_a_recursive_directory_is_pulled_into_an_existing_one_and_pushed_back(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    source = remote_root / "datasets/run1"
    write(source / "a.txt", "alpha")
    write(source / "nested/deeper/b.txt", "beta")
    (source / "empty").mkdir()
    (source / "nested").chmod(0o750)
    (source / "link").symlink_to("a.txt")
    local = tmp_path / "work/job1/data"
    write(local / "already-here.txt", "kept")

    got = await pull(
        location,
        [Item("in", location.remote("/datasets/run1"), local, recursive=True)],
        ssh_command=sshd.ssh_command,
        staging=staging,
    )

    [result] = got.items
    assert (result.done, result.error, result.bytes) == (True, None, len("alpha") + len("beta"))
    assert tree_of(local) == {
        "a.txt": "alpha",
        "already-here.txt": "kept",
        "empty": "<dir>",
        "link": "alpha",
        "nested": "<dir>",
        "nested/deeper": "<dir>",
        "nested/deeper/b.txt": "beta",
    }
    assert os.readlink(local / "link") == "a.txt"
    assert stat.S_IMODE((local / "nested").stat().st_mode) == 0o750

    sent = await push(
        location,
        [Item("out", location.remote("/results/job1/data"), local, recursive=True)],
        ssh_command=sshd.ssh_command,
        staging=staging,
    )

    [result] = sent.items
    assert (result.done, result.error) == (True, None)
    assert result.bytes == len("alpha") + len("beta") + len("kept")
    assert tree_of(remote_root / "results/job1/data") == tree_of(local)
    assert stat.S_IMODE((remote_root / "results/job1/data/nested").stat().st_mode) == 0o750
    assert (local / "a.txt").read_text() == "alpha"  # a push leaves the outputs in place
    assert_staging_empty(staging)


async def test_push_from_many_workdirs_is_one_rsync_process_and_leaves_parents_alone(
    sshd: SshServer,
    location: RsyncLocation,
    remote_root: Path,
    tmp_path: Path,
    staging: Path,
    rsync_log: Path,
) -> None:
    (remote_root / "results").mkdir()
    (remote_root / "results").chmod(0o711)
    parents = [remote_root / "results", *(remote_root / "results").parents]  # up to /tmp and /
    modes = {p: p.stat().st_mode for p in parents}
    items = []
    for i in range(60):
        output = write(tmp_path / f"work/job{i}/out/result.csv", f"{i},{i * i}\n")
        items.append(
            Item((i, "result"), location.remote(f"/results/job{i}/result.csv"), output, False)
        )

    batch = await push(location, items, ssh_command=sshd.ssh_command, staging=staging)

    assert batch.processes == 1
    assert len(rsync_log.read_text().splitlines()) == 1
    assert all(r.done and r.error is None for r in batch.items)
    for i, result in enumerate(batch.items):
        assert result.bytes == len(f"{i},{i * i}\n")
        assert (remote_root / f"results/job{i}/result.csv").read_text() == f"{i},{i * i}\n"
    # existing parents of the listed paths keep their attributes (no implied directories)
    assert {p: p.stat().st_mode for p in parents} == modes
    assert stat.S_IMODE((remote_root / "results").stat().st_mode) == 0o711
    assert_staging_empty(staging)


async def test_missing_sources_are_missing_and_the_others_arrive(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    write(remote_root / "in/present.txt", "here")
    write(remote_root / "in/dir/x.txt", "x")
    items = [
        Item("present", location.remote("/in/present.txt"), tmp_path / "w/present.txt", False),
        Item("absent", location.remote("/in/absent.txt"), tmp_path / "w/absent.txt", False),
        Item("absent-dir", location.remote("/in/nodir"), tmp_path / "w/nodir", True),
        Item("dir", location.remote("/in/dir"), tmp_path / "w/dir", True),
    ]

    batch = await pull(location, items, ssh_command=sshd.ssh_command, staging=staging)

    by_key = {r.key: r for r in batch.items}
    assert by_key["present"].done and by_key["dir"].done
    for key in ("absent", "absent-dir"):
        assert (by_key[key].done, by_key[key].missing, by_key[key].error) == (False, True, None)
    assert not (tmp_path / "w/absent.txt").exists() and not (tmp_path / "w/nodir").exists()
    assert batch.returncode == 0 and batch.processes == 1


async def test_a_missing_output_is_an_item_error_and_the_rest_is_pushed(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    items = [
        Item(1, location.remote("/out/1.txt"), write(tmp_path / "w1/o.txt", "one"), False),
        Item(2, location.remote("/out/2.txt"), tmp_path / "w2/o.txt", False),
        Item(3, location.remote("/out/3"), tmp_path / "w3/never-made", True),
        Item(4, location.remote("/out/4.txt"), write(tmp_path / "w4/o.txt", "four"), False),
        Item(5, location.remote("/out/5.txt"), tmp_path / "w5/link.txt", False),
    ]
    (tmp_path / "w5").mkdir()
    (tmp_path / "w5/link.txt").symlink_to(tmp_path / "w4/o.txt")  # sends what it points to

    batch = await push(location, items, ssh_command=sshd.ssh_command, staging=staging)

    assert [r.done for r in batch.items] == [True, False, False, True, True]
    assert batch.items[1].error == f"output {tmp_path / 'w2/o.txt'} is missing"
    assert batch.items[2].error == f"output {tmp_path / 'w3/never-made'} is missing"
    assert not batch.items[1].missing
    assert (remote_root / "out/1.txt").read_text() == "one"
    assert (remote_root / "out/4.txt").read_text() == "four"
    assert (remote_root / "out/5.txt").read_text() == "four"
    assert not (remote_root / "out/5.txt").is_symlink()
    assert sorted(p.name for p in (remote_root / "out").iterdir()) == ["1.txt", "4.txt", "5.txt"]


async def test_an_item_rsync_refuses_carries_rsyncs_message_and_the_others_arrive(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    write(remote_root / "in/file.txt", "file")
    write(remote_root / "in/dir/f", "f")
    items = [
        # a path below a file: rsync reports "Not a directory" for it (exit 23)
        Item("under-a-file", location.remote("/in/file.txt/x"), tmp_path / "w/x", False),
        Item("ok", location.remote("/in/file.txt"), tmp_path / "w/file.txt", False),
        Item("dir-not-recursive", location.remote("/in/dir"), tmp_path / "w/dir", False),
        Item("file-recursive", location.remote("/in/file.txt"), tmp_path / "w/tree", True),
    ]

    batch = await pull(location, items, ssh_command=sshd.ssh_command, staging=staging)

    under, ok, not_recursive, recursive = batch.items
    assert batch.returncode == 23
    assert under.error is not None and "Not a directory" in under.error
    assert str(location.remote("/in/file.txt/x")) in under.error
    assert ok.done and (tmp_path / "w/file.txt").read_text() == "file"
    assert (
        not_recursive.error
        == f"remote {remote_root}/in/dir is a directory (the transfer is not recursive)"
    )
    assert (
        recursive.error
        == f"remote {remote_root}/in/file.txt is not a directory (the transfer is recursive)"
    )
    assert not (tmp_path / "w/dir").exists() and not (tmp_path / "w/tree").exists()


async def test_a_stopped_sshd_fails_every_item_without_raising_and_a_retry_lands(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    write(remote_root / "in/a.txt", "a")
    write(remote_root / "in/tree/b.txt", "b")
    pulls = [
        Item("a", location.remote("/in/a.txt"), tmp_path / "w/a.txt", False),
        Item("tree", location.remote("/in/tree"), tmp_path / "w/tree", True),
    ]
    pushes = [Item("out", location.remote("/out/c.txt"), write(tmp_path / "c.txt", "c"), False)]

    sshd.stop()
    try:
        got = await pull(location, pulls, ssh_command=sshd.ssh_command, staging=staging)
        sent = await push(location, pushes, ssh_command=sshd.ssh_command, staging=staging)
    finally:
        sshd.start()

    for batch in (got, sent):
        # 255, or 12 when rsync notices the closed stream before ssh's exit
        assert batch.returncode in (12, 255) and batch.processes == 1
        for result in batch.items:
            assert (result.done, result.missing) == (False, False)
            assert result.error is not None
            assert "Connection refused" in result.error, result.error
            assert f"127.0.0.1:{sshd.port}" in result.error
    assert not (tmp_path / "w").exists()
    assert not (remote_root / "out").exists()
    assert_staging_empty(staging)

    got = await pull(location, pulls, ssh_command=sshd.ssh_command, staging=staging)
    sent = await push(location, pushes, ssh_command=sshd.ssh_command, staging=staging)

    assert all(r.done for r in got.items + sent.items)
    assert tree_of(tmp_path / "w") == {"a.txt": "a", "tree": "<dir>", "tree/b.txt": "b"}
    assert (remote_root / "out/c.txt").read_text() == "c"


async def test_a_timeout_kills_the_whole_process_group_and_is_reported(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    write(remote_root / "in/a.txt", "a")
    marker = "31.4159"  # a proxy that never answers: ssh waits for a banner that never comes
    hanging = f"{sshd.ssh_command} -o 'ProxyCommand=sleep {marker}'"
    items = [Item("a", location.remote("/in/a.txt"), tmp_path / "w/a.txt", False)]

    batch = await pull(location, items, ssh_command=hanging, staging=staging, timeout_s=0.5)

    [result] = batch.items
    assert result.error is not None and "timed out after 0.5 s" in result.error
    assert not result.done and not (tmp_path / "w/a.txt").exists()
    await until(lambda: processes_running(f"sleep {marker}") == [], timeout=5)
    assert_staging_empty(staging)

    with anyio.move_on_after(0.5) as cancelled:  # a cancelled call leaves nothing behind
        await pull(location, items, ssh_command=hanging, staging=staging)
    assert cancelled.cancelled_caught
    await until(lambda: processes_running(f"sleep {marker}") == [], timeout=5)
    assert_staging_empty(staging)


async def test_concurrent_calls_share_a_staging_directory(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path, staging: Path
) -> None:
    for i in range(4):
        write(remote_root / f"in/{i}.txt", str(i))
    results = {}

    async def one(i: int) -> None:
        item = Item(i, location.remote(f"/in/{i}.txt"), tmp_path / f"w{i}/f.txt", False)
        results[i] = await pull(location, [item], ssh_command=sshd.ssh_command, staging=staging)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(one, i)

    assert len({batch.task_id for batch in results.values()}) == 4
    for i in range(4):
        assert results[i].items[0].done
        assert (tmp_path / f"w{i}/f.txt").read_text() == str(i)
    assert_staging_empty(staging)


async def test_staging_on_another_filesystem_copies_instead_of_renaming_and_linking(
    sshd: SshServer, location: RsyncLocation, remote_root: Path, tmp_path: Path
) -> None:
    """/dev/shm is a tmpfs where there is one: renames and hard links to /tmp fail there."""
    write(remote_root / "in/f.txt", "f")
    write(remote_root / "in/tree/sub/g.txt", "g")
    local = tmp_path / "work"
    write(local / "out/h.txt", "h")
    write(local / "out-tree/i.txt", "i")
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        staging = Path(d, "staging")

        got = await pull(
            location,
            [
                Item("f", location.remote("/in/f.txt"), local / "in/f.txt", False),
                Item("tree", location.remote("/in/tree"), local / "in/tree", True),
            ],
            ssh_command=sshd.ssh_command,
            staging=staging,
        )
        sent = await push(
            location,
            [
                Item("h", location.remote("/out/h.txt"), local / "out/h.txt", False),
                Item("tree", location.remote("/out/tree"), local / "out-tree", True),
            ],
            ssh_command=sshd.ssh_command,
            staging=staging,
        )

        assert_staging_empty(staging)
    assert all(r.done for r in got.items + sent.items)
    assert tree_of(local / "in") == {
        "f.txt": "f",
        "tree": "<dir>",
        "tree/sub": "<dir>",
        "tree/sub/g.txt": "g",
    }
    assert tree_of(remote_root / "out") == {"h.txt": "h", "tree": "<dir>", "tree/i.txt": "i"}


async def test_without_rsync_every_item_says_so(
    location: RsyncLocation, tmp_path: Path, staging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    items = [Item("a", location.remote("/a"), tmp_path / "a", False)]

    batch = await pull(location, items, staging=staging)

    assert batch.processes == 0 and batch.returncode is None
    assert batch.items[0].error is not None
    assert "rsync is not installed" in batch.items[0].error
    assert (await pull(location, [], staging=staging)).processes == 0


@pytest.mark.parametrize(
    ("uri", "user", "host", "port", "prefix"),
    [
        (
            "rsync://alice@hpc.example.org:2222/project/data/",
            "alice",
            "hpc.example.org",
            2222,
            "/project/data",
        ),
        ("ssh://hpc.example.org", None, "hpc.example.org", None, "/"),
        ("rsync://bob@10.0.0.5/", "bob", "10.0.0.5", None, "/"),
        ("rsync://[::1]:22/scratch", None, "::1", 22, "/scratch"),
        ("rsync://h//a///b", None, "h", None, "/a/b"),
    ],
)
def test_location_uris_are_parsed(
    uri: str, user: str | None, host: str, port: int | None, prefix: str
) -> None:
    assert RsyncLocation.parse(uri) == RsyncLocation(user, host, port, prefix)


def test_location_labels_and_remote_paths() -> None:
    loc = RsyncLocation.parse("rsync://alice@hpc:2222/data")
    assert loc.label() == "alice@hpc:2222"
    assert RsyncLocation.parse("ssh://[::1]").label() == "[::1]"
    assert loc.remote("/a/b") == PurePosixPath("/data/a/b")
    assert loc.remote("/a/./c/../b/") == PurePosixPath("/data/a/b")
    assert RsyncLocation.parse("rsync://hpc").remote("/x") == PurePosixPath("/x")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/../etc/passwd", "escapes the prefix '/data'"),
        ("/a/../../etc", "escapes the prefix '/data'"),
        ("relative/path", "is not an absolute path"),
    ],
)
def test_remote_paths_may_not_leave_the_prefix(path: str, reason: str) -> None:
    with pytest.raises(JobError, match=reason) as refused:
        RsyncLocation.parse("rsync://alice@hpc:2222/data").remote(path)
    assert repr(path) in str(refused.value) and "alice@hpc:2222" in str(refused.value)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("globus://endpoint/path", "the scheme is 'globus', not rsync:// or ssh://"),
        ("hpc.example.org:/data", "not rsync:// or ssh://"),
        ("rsync:///data", "the host is missing"),
        ("rsync://alice@:22/data", "the host is missing"),
        ("rsync://hpc:notaport/data", "the port is not a number in 1-65535"),
        ("rsync://hpc:70000/data", "the port is not a number in 1-65535"),
        ("rsync://hpc:0/data", "the port is not a number in 1-65535"),
        ("rsync://alice:secret@hpc/data", "a password is not allowed"),
        ("rsync://hpc/data?x=1", "a query or fragment is not allowed"),
        ("rsync://hpc/data/../etc", "the prefix may not contain '..'"),
        ("rsync://-oProxyCommand=evil/data", "is not a host name or address"),
        ("rsync://-me@hpc/data", "is not a user name"),
        ("rsync://[::1/data", "Invalid IPv6 URL"),
    ],
)
def test_malformed_location_uris_are_refused_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RsyncLocation.parse(uri)
    message = str(refused.value)
    assert message.startswith(f"transfer location {uri!r}: ")
    assert reason in message
    assert "expected rsync://[user@]host[:port][/prefix]" in message


def test_a_malformed_ssh_command_is_a_config_error(tmp_path: Path) -> None:
    location = RsyncLocation.parse("rsync://hpc/data")
    item = Item("a", location.remote("/a"), tmp_path / "a", False)
    with pytest.raises(ConfigError, match="ssh command"):
        anyio.run(lambda: pull(location, [item], ssh_command="ssh -i 'unclosed", staging=tmp_path))
