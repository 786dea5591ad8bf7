"""The demo's three apps: a shell template, a Python ``run()``, and a parsed postprocess.

They live in an importable module, so the site agent and the launcher load them by
reference. ``site`` is set by the demo before syncing (each demo run has its own site).
"""

from __future__ import annotations

import re

from balsam_mq import ApplicationDefinition


class Hello(ApplicationDefinition):
    """Greets someone from a shell command template."""

    site = "demo"
    command_template = "echo 'hello {{ name }}' from $(hostname)"


class Adder(ApplicationDefinition):
    """Adds two numbers in Python; the sum comes back through job.result()."""

    site = "demo"

    def run(self, x: float, y: float) -> float:
        return x + y


class Energy(ApplicationDefinition):
    """A 'simulation' printing an energy; postprocess parses it into job.data."""

    site = "demo"
    command_template = "echo 'step {{ n }}: energy = {{ -1.5 * n * n }} eV'"
    parameters = {"n": {"required": True, "help": "the system size"}}

    def postprocess(self) -> None:
        with open("job.out") as out:
            match = re.search(r"energy = (-?[0-9.]+) eV", out.read())
        if match is None:
            self.job.state = "FAILED"
            self.job.state_data = {"reason": "no energy in job.out"}
            return
        self.job.data["energy_ev"] = float(match.group(1))
        self.job.state = "POSTPROCESSED"


DEMO_APPS: tuple[type[ApplicationDefinition], ...] = (Hello, Adder, Energy)
