"""The root command: its version, short help and shell completion."""

from __future__ import annotations

from importlib.metadata import version

from cli_helpers import Cli


async def test_version_short_help_and_completion(cli: Cli) -> None:
    assert (await cli.ok("--version")).stdout.strip() == f"balsam-mq {version('balsam_mq')}"
    for args in (["-h"], ["job", "-h"], ["job", "ls", "-h"], ["site", "-h"]):
        shown = await cli.ok(*args)
        assert "Usage:" in shown.stdout, args
    root = (await cli.ok("-h")).stdout
    assert "--install-completion" in root and "--show-completion" in root
    script = await cli.ok("--show-completion", "bash")
    assert "complete" in script.stdout and "balsam" in script.stdout
