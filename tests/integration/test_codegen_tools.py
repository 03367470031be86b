"""The generator's outside faces: the protoc plugin, ``eventstore generate``, and the
generated code under ruff and mypy. Real protoc (grpcio-tools), real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "proto" / "examples"
BIN = Path(sys.executable).parent
PLUGIN = BIN / "protoc-gen-eventsourcing"
OPTIONS_DIR = ROOT / "eventstore" / "proto"


def run(args: list[str], cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``eventstore generate proto/examples --out OUT`` (the console script)."""
    out = tmp_path_factory.mktemp("generated")
    result = run([str(BIN / "eventstore"), "generate", str(EXAMPLES), "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out


# -- the protoc plugin ---------------------------------------------------------------
def test_plugin_runs_under_grpc_tools_protoc(tmp_path: Path) -> None:
    result = run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{EXAMPLES}",
            f"-I{OPTIONS_DIR}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={tmp_path}",
            "subscription/model.proto",
            "subscription/events.proto",
            "subscription/subscription.proto",
        ]
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py"))
    assert written == [
        "subscription/events_pb2.py",
        "subscription/model_es.py",
        "subscription/model_pb2.py",
        "subscription/subscription_es.py",
        "subscription/subscription_pb2.py",
    ]
    golden = ROOT / "tests" / "golden" / "codegen" / "subscription" / "model_es.py.golden"
    assert (tmp_path / "subscription" / "model_es.py").read_text() == golden.read_text()


def test_plugin_reports_model_errors_through_protoc(tmp_path: Path) -> None:
    (tmp_path / "bad.proto").write_text(
        textwrap.dedent("""\
        syntax = "proto3";
        import "eventsourcing/options.proto";
        message Account {
          option (eventsourcing.aggregate_root).id_field = "acount_id";
          string account_id = 1;
        }
        """)
    )
    result = run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"-I{OPTIONS_DIR}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={tmp_path}",
            "bad.proto",
        ]
    )
    assert result.returncode != 0
    assert "bad.proto:4:" in result.stderr
    assert "id_field 'acount_id'" in result.stderr
    assert not list(tmp_path.glob("*_es.py"))


def test_plugin_prints_model_warnings(tmp_path: Path) -> None:
    result = run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{EXAMPLES}",
            f"-I{OPTIONS_DIR}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={tmp_path}",
            "shop/shop.proto",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "shop/shop.proto:27:3: warning: state field 'version'" in result.stderr


# -- eventstore generate ------------------------------------------------------------
def test_generate_writes_pb2_pyi_and_es_per_file(generated: Path) -> None:
    names = sorted(p.relative_to(generated).as_posix() for p in generated.rglob("*.py*"))
    assert "bank/account_pb2.py" in names
    assert "bank/account_pb2.pyi" in names
    assert "bank/account_es.py" in names
    assert "subscription/events_pb2.py" in names
    assert not (generated / "eventsourcing").exists()


def test_generated_pb2_imports_the_options_from_inside_eventstore(generated: Path) -> None:
    text = (generated / "bank" / "account_pb2.py").read_text()
    assert "from eventstore.proto.eventsourcing import options_pb2" in text
    assert "from eventsourcing import" not in text


def test_generated_modules_import_in_a_fresh_process(generated: Path) -> None:
    script = textwrap.dedent("""\
        import sys
        from subscription.model_es import SubscriptionAggregate, SUBSCRIPTION_EVENTS
        from subscription.subscription_es import SDK
        from shop.shop_es import OrderAggregate, CustomerAggregate
        from bank.account_es import AccountAggregate, AccountOpenedEvent
        assert "eventsourcing" not in sys.modules, "a top-level eventsourcing was imported"
        print(sorted(SUBSCRIPTION_EVENTS))
        """)
    result = run([sys.executable, "-c", script], cwd=generated, PYTHONPATH=str(generated))
    assert result.returncode == 0, result.stderr
    assert "subscription.v1.PlanChangedEvent" in result.stdout


def test_run_sdk_joins_the_services_of_one_aggregate_split_across_files(
    tmp_path: Path,
) -> None:
    protos = tmp_path / "protos"
    protos.mkdir()
    head = 'syntax = "proto3";\npackage s.v1;\nimport "eventsourcing/options.proto";\n'
    (protos / "state.proto").write_text(
        head + "message Box { option (eventsourcing.aggregate_root).id_field = 'id';"
        " string id = 1; }\nmessage Req {}\n"
        "service BoxCommandService { rpc Pack(Req) returns (Req); }\n"
    )
    (protos / "reads.proto").write_text(
        head + 'import "state.proto";\nservice BoxQueryService { rpc Peek(Req) returns (Req); }\n'
    )
    out = tmp_path / "out"
    result = run([str(BIN / "eventstore"), "generate", str(protos), "--out", str(out)])
    assert result.returncode == 0, result.stderr
    script = (
        "from es_sdk import SDK\n"
        "sdk = SDK(None)\n"
        "print(type(sdk.box).__name__, hasattr(sdk.box, 'pack'), hasattr(sdk.box, 'peek'))\n"
    )
    check = run([sys.executable, "-c", script], cwd=out, PYTHONPATH=str(out))
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["BoxClient", "True", "True"]


def test_generate_reports_a_proto_error_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "protos").mkdir()
    (tmp_path / "protos" / "broken.proto").write_text(
        'syntax = "proto3";\nmessage A { strin x = 1; }\n'
    )
    result = run(
        [
            str(BIN / "eventstore"),
            "generate",
            str(tmp_path / "protos"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert result.returncode == 1
    assert f"{tmp_path / 'protos' / 'broken.proto'}:2:13:" in result.stderr
    assert not (tmp_path / "out").exists()


def test_generate_skips_a_copy_of_the_options_in_the_proto_folder(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto" / "eventsourcing", tmp_path / "proto" / "eventsourcing")
    shutil.copytree(EXAMPLES / "bank", tmp_path / "proto" / "bank")
    result = run(
        [
            str(BIN / "eventstore"),
            "generate",
            str(tmp_path / "proto"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out" / "eventsourcing").exists()
    assert (tmp_path / "out" / "bank" / "account_es.py").exists()


def _one_proto(tmp_path: Path) -> Path:
    """PROTO_DIR with shop/a.proto, which generates shop/a_pb2.py and shop/a_pb2.pyi."""
    (tmp_path / "protos" / "shop").mkdir(parents=True)
    (tmp_path / "protos" / "shop" / "a.proto").write_text(
        'syntax = "proto3";\npackage shop;\nmessage A { string x = 1; }\n'
    )
    return tmp_path / "protos"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_generate_into_an_existing_file_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventstore.cli import main

    protos = _one_proto(tmp_path)
    (tmp_path / "afile").write_text("mine")
    assert main(["generate", str(protos), "--out", str(tmp_path / "afile")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eventstore generate: cannot write ")
    assert f"{str(tmp_path / 'afile')!r} is a file, not a folder" in err
    assert len(err.splitlines()) == 1
    assert (tmp_path / "afile").read_text() == "mine"


def test_generate_with_a_file_where_a_subfolder_goes_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventstore.cli import main

    protos, out = _one_proto(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "shop").write_text("")
    assert main(["generate", str(protos), "--out", str(out)]) == 1
    assert f"{str(out / 'shop')!r} is a file, not a folder" in capsys.readouterr().err
    assert _files_under(out) == [out / "shop"]


def test_generate_with_a_folder_where_a_later_file_goes_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventstore.cli import main

    protos, out = _one_proto(tmp_path), tmp_path / "out"
    (out / "shop" / "a_pb2.pyi").mkdir(parents=True)  # written after a_pb2.py
    assert main(["generate", str(protos), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {str(out / 'shop' / 'a_pb2.pyi')!r}: it is a folder" in err
    assert _files_under(out) == []


def test_generate_into_a_folder_without_write_permission_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventstore.cli import main

    protos = _one_proto(tmp_path)
    # sysfs refuses new folders to everyone, root included (chmod would not stop root).
    out = Path("/sys/kernel") / f"es-out-{os.getpid()}"
    assert main(["generate", str(protos), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "Traceback" not in err
    assert not out.exists()


# -- the generated code under ruff and mypy ---------------------------------------------
def generated_python(generated: Path) -> list[Path]:
    return [*generated.rglob("*_es.py"), generated / "es_sdk.py"]


def mypy(generated: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """mypy on ``files`` in ``generated``, with ``eventstore`` visible from its source.

    The editable install is an import hook mypy cannot follow; without the
    repository root on MYPYPATH, ``ignore_missing_imports`` would turn
    everything from ``eventstore`` into ``Any`` and hide every type error.
    """
    return run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-incremental",
            "--explicit-package-bases",
            *files,
        ],
        cwd=generated,
        MYPYPATH=str(ROOT),
    )


def mypy_probe(generated: Path, code: str) -> subprocess.CompletedProcess[str]:
    """mypy on a user module ``code`` written beside the generated packages."""
    probe = generated / "probe_usage.py"
    probe.write_text(textwrap.dedent(code))
    try:
        return mypy(generated, probe.name)
    finally:
        probe.unlink()


def test_generated_code_passes_ruff(generated: Path) -> None:
    files = [str(p) for p in generated_python(generated)]
    result = run([str(BIN / "ruff"), "check", "--config", str(ROOT / "pyproject.toml"), *files])
    assert result.returncode == 0, result.stdout


def test_generated_all_is_sorted_as_ruff_rule_ruf022_wants(generated: Path) -> None:
    files = [str(p) for p in generated_python(generated)]
    result = run([str(BIN / "ruff"), "check", "--isolated", "--select", "RUF022", *files])
    assert result.returncode == 0, result.stdout


def test_generated_code_passes_every_ruf_rule_of_a_project_without_isort(
    generated: Path,
) -> None:
    # The I001 exemption in the header must not be reported as unused (RUF100).
    files = [str(p) for p in generated_python(generated)]
    args = ["check", "--isolated", "--line-length", "100", "--select", "RUF"]
    result = run([str(BIN / "ruff"), *args, *files])
    assert result.returncode == 0, result.stdout


def test_generated_code_passes_mypy(generated: Path) -> None:
    files = [p.relative_to(generated).as_posix() for p in generated_python(generated)]
    result = mypy(generated, *files)
    assert result.returncode == 0, result.stdout


def test_mypy_of_generated_code_sees_the_types_from_eventstore(generated: Path) -> None:
    # ``version`` comes from eventstore's AggregateRoot: were eventstore invisible to
    # mypy, the aggregate's base would be Any and this would pass unnoticed.
    result = mypy_probe(
        generated,
        """\
        from bank.account_es import AccountAggregate

        def version_text(agg: AccountAggregate) -> str:
            return agg.version
        """,
    )
    assert result.returncode == 1, result.stdout
    assert 'Incompatible return value type (got "int", expected "str")' in result.stdout


def test_mypy_catches_a_wrong_message_assigned_to_a_message_typed_state_field(
    generated: Path,
) -> None:
    result = mypy_probe(
        generated,
        """\
        from subscription.model_es import BillingAddress, SubscriptionAggregate

        def move(agg: SubscriptionAggregate) -> None:
            agg.renews_at = BillingAddress()
        """,
    )
    assert result.returncode == 1, result.stdout
    assert 'Incompatible types in assignment (expression has type "BillingAddress"' in (
        result.stdout
    )
    assert 'variable has type "Timestamp"' in result.stdout


def test_mypy_catches_a_handler_that_does_not_fit_the_generated_protocol(
    generated: Path,
) -> None:
    result = mypy_probe(
        generated,
        """\
        from eventstore.core.transport import RequestContext
        from bank.account_es import (
            AccountCommandServiceServer, DepositCommand, BalanceResponse, WithdrawCommand,
        )

        class Handler:
            def open_account(self, cmd: DepositCommand, ctx: RequestContext) -> BalanceResponse:
                return BalanceResponse()
            def deposit(self, cmd: DepositCommand, ctx: RequestContext) -> BalanceResponse:
                return BalanceResponse()
            def withdraw(self, cmd: WithdrawCommand, ctx: RequestContext) -> BalanceResponse:
                return BalanceResponse()
            def close_account(self, cmd: DepositCommand, ctx: RequestContext) -> BalanceResponse:
                return BalanceResponse()

        AccountCommandServiceServer(Handler())
        """,
    )
    assert result.returncode == 1
    assert 'Argument 1 to "AccountCommandServiceServer" has incompatible type' in result.stdout
