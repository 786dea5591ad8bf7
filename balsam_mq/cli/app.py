"""`balsam-mq app ls`: the apps synced to a site (or every site), briefly or in full."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from balsam_mq.cli.common import JsonOption, run
from balsam_mq.cli.output import console, print_json, show_table

if TYPE_CHECKING:
    from balsam_mq.domain import App

app = typer.Typer(help="List the apps synced to sites.", no_args_is_help=True)


@app.command("ls")
def ls(
    site: Annotated[
        str, typer.Option("--site", "-s", help="A site name or id, or 'all' for every site.")
    ] = "all",
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show parameters, transfer slots, cleanup patterns, env."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the apps synced to a site (every site by default).

    Example:  balsam-mq app ls --site polaris --verbose
    """

    async def main() -> list[tuple[App, str]]:
        from balsam_mq.sdk import App as SdkApp, Site

        query = SdkApp.objects.order_by("site_id", "name")
        if site != "all":
            query = query.filter(site_id=(await Site.objects.lookup(site)).id)
        apps = await query
        names = {s.id: s.name async for s in Site.objects.filter(id=[a.site_id for a in apps])}
        return [(a, names.get(a.site_id, str(a.site_id))) for a in apps]

    found = run(main)
    if as_json:
        print_json([app_json(a, site_name) for a, site_name in found])
        return
    if verbose:
        _show_verbose(found)
        return
    show_table(
        ["id", "name", "site", "kind", "parameters", "description"],
        [
            [
                str(a.id),
                a.name,
                site_name,
                _kind(a),
                ", ".join(_param_label(n, p.required) for n, p in a.parameters.items()),
                a.description.partition("\n")[0],
            ]
            for a, site_name in found
        ],
    )


def app_json(a: App, site_name: str) -> dict[str, Any]:
    """An app for scripts: every stored field but the serialized class, plus the site name."""
    return {**a.model_dump(mode="json", exclude={"serialized_class"}), "site": site_name}


def _kind(a: App) -> str:
    return "template" if a.command_template is not None else "run()"


def _param_label(name: str, required: bool) -> str:
    return name if required else f"[{name}]"


def _show_verbose(found: list[tuple[App, str]]) -> None:
    out = console()
    for i, (a, site_name) in enumerate(found):
        lines = _describe(a, site_name)
        if out.is_terminal:
            if i:
                out.print()
            for line in lines:
                out.print(line)
        else:
            if i:
                typer.echo("")
            for line in lines:
                typer.echo(line.plain)


def _describe(a: App, site_name: str) -> list[Text]:
    """The full picture of one app, line by line (styled; ``.plain`` off a terminal)."""
    lines = [Text.assemble((f"App {a.id} {a.name}", "bold"), f" at site {site_name}")]
    if a.description:
        lines += [Text(f"  {line}", style="italic") for line in a.description.splitlines()]
    if a.command_template is not None:
        lines.append(_entry("command", a.command_template))
    else:
        python = a.python_exe or "the site's python"
        lines.append(_entry("runs", f"run() with {python}"))
    for name, p in a.parameters.items():
        text = "required" if p.required else f"optional, default {p.default!r}"
        lines.append(_entry(f"parameter {name}", text + (f" - {p.help}" if p.help else "")))
    if a.extra_parameters:
        lines.append(_entry("parameters", "any other keyword (run(**kwargs))"))
    for slot, t in a.transfers.items():
        text = f"{t.direction}, {t.local_path}, {'required' if t.required else 'optional'}"
        if t.recursive:
            text += ", recursive"
        lines.append(
            _entry(f"transfer {slot}", text + (f" - {t.description}" if t.description else ""))
        )
    if a.cleanup_files:
        lines.append(_entry("cleanup", " ".join(a.cleanup_files)))
    for key, value in a.environment_variables.items():
        lines.append(_entry("environment", f"{key}={value}"))
    return lines


def _entry(name: str, value: str) -> Text:
    return Text.assemble("  ", (f"{name}:", "bold"), f" {value}")
