"""Commands of this family (filled by the issue that adds them)."""

from __future__ import annotations

from samlab.commands import Tool

TOOLS: list[Tool] = []
