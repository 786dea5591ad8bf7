"""The SDK's shape: its modules import each other without a circle (type-checking imports and
imports inside functions included), and the Job's attributes are the field table's."""

from __future__ import annotations

import ast
from pathlib import Path

import balsam_mq.sdk
from balsam_mq.domain import Job as JobDocument
from balsam_mq.sdk.fields import PATHS
from balsam_mq.sdk.view import JobView

SDK = Path(balsam_mq.sdk.__file__).parent


def imports() -> dict[str, set[str]]:
    """module -> the SDK modules it imports anywhere in its text."""
    modules = {p.stem for p in SDK.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in SDK.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "balsam_mq.sdk":
                found |= {a.name if a.name in modules else "__init__" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "balsam_mq.sdk."
            ):
                found.add((node.module or "").split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {
                    a.name.split(".")[2] for a in node.names if a.name.startswith("balsam_mq.sdk.")
                }
        graph[path.stem] = found - {path.stem}
    return graph


def test_no_sdk_module_imports_itself_through_others() -> None:
    graph = imports()
    assert graph["fields"] == set()  # the field table depends on no other SDK module

    def circle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            module, path = stack.pop()
            for nxt in sorted(graph.get(module, ())):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    circles = [c for m in sorted(graph) if m != "__init__" if (c := circle_from(m))]
    assert circles == []


def test_the_job_attributes_are_the_field_table() -> None:
    """The attributes type checkers are told of (written out for them) are exactly those
    the field table gives every Job at run time, each living in a stored field."""
    (view,) = [
        node
        for node in ast.parse((SDK / "view.py").read_text()).body
        if isinstance(node, ast.ClassDef) and node.name == "JobView"
    ]
    (for_checkers,) = [
        node
        for node in view.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    declared = {
        node.target.id
        for node in for_checkers.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and not node.target.id.startswith("_")
    }
    assert declared == set(PATHS)
    assert all(name in vars(JobView) for name in PATHS)  # made at run time from the table
    assert {path[0] for path in PATHS.values()} <= set(JobDocument.model_fields)
