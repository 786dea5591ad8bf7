"""Scheduler test helpers: reading and steering the fake scheduler's recorded state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Fake:
    dir: Path

    def calls(self, command: str) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c["args"] for c in map(json.loads, lines) if c["command"] == command]

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "state.json").read_text())
        return data

    def set(self, job_id: str, **fields: Any) -> None:
        data = self.state()
        data["jobs"][job_id].update(fields)
        (self.dir / "state.json").write_text(json.dumps(data))
