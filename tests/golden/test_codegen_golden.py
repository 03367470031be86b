"""Golden tests: the generated source of the example domains, byte for byte.

The expected files live in ``tests/golden/codegen/`` (named ``*.py.golden`` so
that no linter or test collector touches them). After an intended change
to the templates, rewrite them with::

    EVENTSTORE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden

and review the diff. The formatter runs here only, to prove the templates
already write formatted code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore.codegen.build import build_model
from eventstore.codegen.compiler import compile_files
from eventstore.codegen.model import Model
from eventstore.codegen.render import render_file, render_live, render_run_sdk

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "proto" / "examples"
GOLDEN = Path(__file__).parent / "codegen"
UPDATE = os.environ.get("EVENTSTORE_UPDATE_GOLDEN") == "1"
RUFF = Path(sys.executable).parent / "ruff"

FILE_OUTPUTS = {
    "bank/account.proto": "bank/account_es.py",
    "shop/shop.proto": "shop/shop_es.py",
    "subscription/model.proto": "subscription/model_es.py",
    "subscription/subscription.proto": "subscription/subscription_es.py",
    "transfer/transfer.proto": "transfer/transfer_es.py",
}


@pytest.fixture(scope="module")
def model() -> Model:
    files = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.proto"))
    return build_model(compile_files(files, [EXAMPLES]).file)


def check(relative: str, text: str) -> None:
    path = GOLDEN / f"{relative}.golden"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with EVENTSTORE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("proto", sorted(FILE_OUTPUTS))
def test_generated_file_matches_golden(model: Model, proto: str) -> None:
    rendered = render_file(model, proto)
    assert rendered is not None
    check(FILE_OUTPUTS[proto], rendered.source)


def test_file_declaring_only_events_generates_nothing(model: Model) -> None:
    assert render_file(model, "subscription/events.proto") is None


def test_run_sdk_over_services_of_several_files_matches_golden(model: Model) -> None:
    text = render_run_sdk(model, model.files)
    assert text is not None
    check("es_sdk.py", text)


def test_live_module_source_matches_golden(model: Model) -> None:
    bank = build_model(compile_files(["bank/account.proto"], [EXAMPLES]).file)
    check("live/bank.py", render_live(bank, "bank.proto").source)


def test_live_module_with_a_process_manager_matches_golden() -> None:
    transfer = build_model(compile_files(["transfer/transfer.proto"], [EXAMPLES]).file)
    check("live/transfer.py", render_live(transfer, "transfer.proto").source)


GOLDEN_FILES = [*sorted(FILE_OUTPUTS.values()), "es_sdk.py", "live/bank.py", "live/transfer.py"]


@pytest.mark.parametrize("relative", GOLDEN_FILES)
def test_golden_file_is_already_formatted(relative: str) -> None:
    text = (GOLDEN / f"{relative}.golden").read_text(encoding="utf-8")
    result = subprocess.run(
        [
            str(RUFF),
            "format",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--diff",
            "--stdin-filename",
            relative,
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
