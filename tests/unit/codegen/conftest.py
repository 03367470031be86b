"""Helpers for the code generation tests: proto text with known line numbers."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "proto" / "examples"

HEADER = ['syntax = "proto3";', "package t.v1;", 'import "eventsourcing/options.proto";']
#: Line number of the first body line given to ``proto_text``.
FIRST_BODY_LINE = len(HEADER) + 1


def proto_text(*body: str) -> str:
    """A proto file: three header lines, then ``body`` one line each (line 4 onwards)."""
    return "\n".join([*HEADER, *body]) + "\n"
