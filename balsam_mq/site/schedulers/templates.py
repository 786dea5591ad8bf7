"""The batch job script: a Jinja2 template (the site's ``job-template.sh`` or the default)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jinja2

from balsam_mq.errors import ConfigError

TEMPLATE_FILE = "job-template.sh"

DEFAULT_TEMPLATE = """\
#!/bin/bash
{%- if scheduler == "slurm" %}
#SBATCH --job-name=balsam-{{ batch_job_id }}
#SBATCH --output={{ output }}
{%- elif scheduler == "pbs" %}
#PBS -N balsam-{{ batch_job_id }}
#PBS -j oe
#PBS -o {{ output }}
{%- endif %}
# balsam_mq batch job {{ batch_job_id }} of site {{ site_id }}:
# {{ num_nodes }} node(s), {{ wall_time_min }} min, {{ job_mode }} mode.
# Add scheduler directives or module loads above the launcher line as needed; `exec`
# lets a SIGTERM from the scheduler reach the launcher, which then stops its jobs cleanly.
{% for name, value in env.items() %}
export {{ name }}={{ value | quote }}
{%- endfor %}

cd {{ site_path | quote }}
exec {{ launcher_command }}
"""

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_ENV.filters["quote"] = lambda value: shlex.quote(str(value))


def template_text(site_path: Path, template: str | None = None) -> tuple[str, str]:
    """``(text, where it came from)``: ``template`` (relative to the site), else the site's
    ``job-template.sh``, else the built-in default."""
    if template:
        path = Path(template)
        path = path if path.is_absolute() else site_path / path
        if not path.is_file():
            raise ConfigError(f"scheduler.template: {path} does not exist")
        return path.read_text(), str(path)
    path = site_path / TEMPLATE_FILE
    if path.is_file():
        return path.read_text(), str(path)
    return DEFAULT_TEMPLATE, "built-in default"


def render_script(text: str, context: dict[str, Any], *, source: str = "job template") -> str:
    """The script for one batch job; a variable the template uses but lacks is an error."""
    try:
        return _ENV.from_string(text).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{source}: line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
