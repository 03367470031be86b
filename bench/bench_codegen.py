"""Code generation: ``generate_module`` on the bank-account proto against raw protoc.

The baseline is grpcio-tools' protoc run in this process on the same file,
writing only a descriptor set: the part of the work no generator can skip.
The issue's target is a median under 50 ms for ``generate_module``.

    .venv/bin/python -m bench.bench_codegen [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, format_row, median_seconds
from eventstore.codegen import generate_module
from eventstore.codegen.compiler import run_protoc, well_known_include
from eventstore.proto import INCLUDE_DIR

TOPIC = "codegen"
BANK = Path(__file__).resolve().parent.parent / "proto" / "examples" / "bank" / "account.proto"
TARGET_MS = 50.0


def run(repeat: int = 21, *, quick: bool = False) -> list[Figure]:
    """Median of ``repeat`` runs of each (``quick``: 7)."""
    if quick:
        repeat = 7
    source = BANK.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="bench-codegen-") as tmp:
        (Path(tmp) / "bank.proto").write_text(source, encoding="utf-8")
        out = os.path.join(tmp, "set.binpb")
        args = [
            f"-I{tmp}",
            f"-I{INCLUDE_DIR}",
            f"-I{well_known_include()}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            "bank.proto",
        ]

        def raw_protoc() -> None:
            code, err = run_protoc(args)
            assert code == 0, err

        def generate() -> None:
            generate_module(source, name="bank")

        raw = median_seconds(raw_protoc, repeat=repeat, warmup=2) * 1000
        ours = median_seconds(generate, repeat=repeat, warmup=2) * 1000
    return [
        Figure(
            TOPIC,
            f"generate_module(bank account proto), median of {repeat}",
            ours,
            "ms",
            "raw in-process protoc, descriptor set only",
            raw,
            higher_is_better=False,
            target_text=f"< {TARGET_MS:.0f} ms",
            meets_target=ours < TARGET_MS,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for figure in run(args.repeat, quick=args.quick):
        print(format_row(figure))


if __name__ == "__main__":
    main()
