"""`balsam-mq app ls` against the real stack."""

from __future__ import annotations

from cli_helpers import Cli, World

from balsam_mq.sdk import ApplicationDefinition, Site


async def test_ls_lists_every_site_by_default(cli: Cli, world: World) -> None:
    await Site.objects.create(name="theta")

    class Other(ApplicationDefinition):
        site = "theta"
        command_template = "other"

    await Other.sync()
    lines = (await cli.ok("app", "ls")).stdout.splitlines()
    assert lines == [
        "1\tAdder\tpolaris\trun()\tx, [y]\tAdds two numbers.",
        "2\tSim\tpolaris\ttemplate\tinput_filename, [mode]\t",
        "3\tOther\ttheta\ttemplate\t\t",
    ]
    assert (await cli.ok("app", "ls", "--site", "all")).stdout.splitlines() == lines
    only = await cli.json("app", "ls", "--site", "theta")
    assert [(a["name"], a["site"], a["command_template"]) for a in only] == [
        ("Other", "theta", "other")
    ]
    assert "serialized_class" not in only[0]


async def test_verbose_shows_parameters_transfers_and_cleanup(cli: Cli, world: World) -> None:
    out = (await cli.ok("app", "ls", "-s", "polaris", "--verbose")).stdout
    assert out.splitlines() == [
        "App 1 Adder at site polaris",
        "  Adds two numbers.",
        "  runs: run() with the site's python",
        "  parameter x: required",
        "  parameter y: optional, default 1",
        "",
        "App 2 Sim at site polaris",
        "  command: sim --mode {{ mode }} -inp {{ input_filename }}",
        "  parameter input_filename: required",
        "  parameter mode: optional, default 'explore' - The simulation mode",
        "  transfer result: out, job.out, optional - Calculation stdout",
        "  cleanup: *.hdf *.h5",
    ]


async def test_json_carries_the_full_spec(cli: Cli, world: World) -> None:
    (adder, sim) = await cli.json("app", "ls")
    assert adder["parameters"]["y"] == {"required": False, "default": 1, "help": ""}
    assert sim["transfers"]["result"]["direction"] == "out"
    assert sim["cleanup_files"] == ["*.hdf", "*.h5"]


async def test_unknown_site(cli: Cli, world: World) -> None:
    assert (
        await cli.error("app", "ls", "--site", "nowhere") == "error: site 'nowhere' does not exist"
    )
