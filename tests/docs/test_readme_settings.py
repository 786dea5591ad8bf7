"""README.md's table of environment variables is the one the program reads: every
setting has its row, with the default ``Settings`` gives it, and no row names a
variable nothing reads."""

from __future__ import annotations

import re
from pathlib import Path

from balsam_mq.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PACKAGE = ROOT / "balsam_mq"
_ROW = re.compile(r"^\| `(?P<var>BALSAM_[A-Z_]+)` \| (?P<default>[^|]+) \|", re.MULTILINE)
# defaults the table words rather than prints (None, or a path that depends on the user)
_WORDED = {"—", "(search)", "(stored)"}


def _table() -> dict[str, str]:
    text = README.read_text()
    start = text.index("### Environment (every process)")
    section = text[start : text.index("\n#", start + 1)]
    return {m["var"]: m["default"].strip() for m in _ROW.finditer(section)}


def test_every_setting_has_its_row_with_its_default() -> None:
    table = _table()
    fields = Settings.model_fields.items()
    variables = {f"{ENV_PREFIX}{name.upper()}": field for name, field in fields}
    assert set(variables) <= set(table)
    for variable, field in variables.items():
        shown, default = table[variable], field.get_default(call_default_factory=True)
        if default is None:
            assert shown in _WORDED, variable
        elif isinstance(default, Path):
            home = str(default).replace(str(Path.home()), "~", 1)
            assert shown == f"`{home}`", variable
        else:
            assert shown == f"`{default}`", (variable, shown, default)
    # the other rows: variables a command reads itself (the launcher's ``--site``...)
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for variable in set(table) - set(variables):
        assert f'"{variable}"' in source, f"{variable}: nothing reads it"
