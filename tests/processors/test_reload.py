"""Reloading settings.yml: each change applied now, for new launchers, or only after a restart;
a malformed file refused whole, naming the key; a running agent taking what applies now."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from agent_helpers import SiteEnv

from balsam_mq.errors import ConfigError
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.processors.reload import RULES, Takes, plan_reload, takes
from balsam_mq.site.config import SiteConfig, parse_config
from balsam_mq.site.sections import dotted

BASE = "site_id: 4\nname: polaris\n"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yml"
    path.write_text(BASE + text)
    return path


def test_every_setting_has_a_rule() -> None:
    keys = dotted(SiteConfig())
    assert {key: takes(key) for key in keys}  # no KeyError: each key or its section is listed
    sections = {key.split(".")[0] for key in keys}
    assert set(RULES) - set(keys) <= sections, "a rule names no setting"


def test_changes_are_sorted_by_how_they_take_effect(tmp_path: Path) -> None:
    current = parse_config(BASE + "scheduler: {interval_s: 5}\n")
    path = _file(
        tmp_path,
        "hooks: {workers: 8, batch_size: 10}\nreaper: {grace_s: 30}\n"
        "launcher: {heartbeat_s: 2}\nscheduler: {kind: slurm, interval_s: 5}\n"
        "logs: {max_mb: 1}\n",
    )
    plan = plan_reload(current, path)
    assert [str(c) for c in plan.taking(Takes.NOW)] == [
        "hooks.batch_size 50 → 10",
        "reaper.grace_s 60 → 30",
        "logs.max_mb 20 → 1",
    ]
    assert [str(c) for c in plan.taking(Takes.LAUNCHERS)] == ["launcher.heartbeat_s 10 → 2"]
    assert [str(c) for c in plan.taking(Takes.RESTART)] == [
        "hooks.workers 2 → 8",
        "scheduler.kind local → slurm",
    ]
    # what the agent runs with: the file, but the restart-only keys as they are
    assert plan.config.hooks.workers == 2 and plan.config.section("scheduler")["kind"] == "local"
    assert plan.config.hooks.batch_size == 10 and plan.config.reaper.grace_s == 30
    assert plan.config.section("launcher") == {"heartbeat_s": 2}
    (info, warning) = plan.messages()
    assert info == (
        logging.INFO,
        "settings.yml reloaded: applied now: hooks.batch_size 50 → 10, reaper.grace_s 60 → 30, "
        "logs.max_mb 20 → 1; for launchers started from now on: launcher.heartbeat_s 10 → 2",
    )
    assert warning[0] == logging.WARNING
    assert warning[1].endswith("hooks.workers 2 → 8, scheduler.kind local → slurm")
    # reloading the same file again says the restart is still wanting, and nothing else
    again = plan_reload(plan.config, path)
    assert [c.key for c in again.changes] == ["hooks.workers", "scheduler.kind"]


def test_an_unchanged_file_says_so(tmp_path: Path) -> None:
    plan = plan_reload(parse_config(BASE), _file(tmp_path, "hooks: {workers: 2}\n"))
    assert plan.changes == [] and plan.messages() == [
        (logging.INFO, "settings.yml reloaded: nothing changed")
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("reaper: {grace_s: 10}\nhooks: {batch_size: 0}\n", "hooks.batch_size: Input should be"),
        ("launcher: {heartbeat_s: -1}\n", "launcher.heartbeat_s: Input should be greater than 0"),
        ("elastic_queue: {min_nodes: 4, max_nodes: 2}\n", "min_nodes 4 > max_nodes 2"),
        ("reaper: [1]\n", "reaper: Input should be a valid dictionary"),
        ("hooks: {workers: 2\n", "not valid YAML"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_key(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError, match=r"settings\.yml") as raised:
        plan_reload(parse_config(BASE), path)
    assert problem in str(raised.value)


async def test_a_running_agent_takes_what_applies_now(
    start_agent: Callable[..., Awaitable[SiteAgent]], site: SiteEnv
) -> None:
    agent = await start_agent()
    await agent.running.wait()
    path = site.dir.settings_file
    path.write_text(
        yaml.safe_dump(
            {"site_id": site.id, "name": "polaris", "hooks": {"workers": 5, "batch_size": 7}}
        )
    )
    plan = plan_reload(agent.config, path)
    agent.reconfigure(plan.config)
    assert agent.config.hooks.batch_size == 7 and agent.config.hooks.workers == 2
    assert {c.batch_size for c in agent.consumers} == {7}
