"""Helpers shared by test folders (tests/ is on the path: see pyproject.toml)."""
