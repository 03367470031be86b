"""``eventstore serve``: its arguments and module loading (serving: test_service_processes)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import SDK, DepositCommand, OpenAccountCommand  # noqa: E402

from eventstore.cli import main  # noqa: E402
from eventstore.nats import NatsTransport  # noqa: E402
from eventstore.serve import ServeOptions, load_factory, serve  # noqa: E402
from eventstore.sqlite import SQLiteEventStore, SQLiteReadModel  # noqa: E402


def test_serve_needs_one_nats_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "tests.nats.service_app", "--store", "sqlite://"]) == 2
    assert "--nats URL" in capsys.readouterr().err
    both = ["--nats", "nats://127.0.0.1:1", "--embedded"]
    assert main(["serve", "tests.nats.service_app", "--store", "sqlite://", *both]) == 2
    assert "not both" in capsys.readouterr().err


def test_load_factory_names_what_is_missing() -> None:
    _, factory = load_factory("tests.nats.service_app")
    assert factory.__name__ == "services"
    with pytest.raises(SystemExit, match="cannot import module 'no_such_module_here'"):
        load_factory("no_such_module_here")
    with pytest.raises(SystemExit, match="has no function 'nothing'"):
        load_factory("tests.nats.service_app:nothing")


def test_serve_runs_in_process_until_cancelled(tmp_path: Path) -> None:
    """The same run as under the command, in this process: host, relay, projections, stop."""
    db, model = tmp_path / "bank.db", tmp_path / "model.db"
    os.environ["ES_TEST_READ_MODEL"] = str(model)

    async def go() -> tuple[int, int]:
        urls: list[str] = []
        ready = asyncio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        options = ServeOptions(
            "tests.nats.service_app", f"sqlite:///{db}", embedded=True, allow_anonymous=True
        )
        task = asyncio.ensure_future(serve(options, on_ready))
        await asyncio.wait_for(ready.wait(), 30)
        async with NatsTransport(urls[0]) as transport:
            sdk = SDK(transport)
            await sdk.account.open_account(OpenAccountCommand(account_id="s", owner="S"))
            await sdk.account.deposit(DepositCommand(account_id="s", amount=3))
        checkpoint = 0
        for _ in range(300):
            with SQLiteReadModel(model) as read_model:
                checkpoint = read_model.load_checkpoint("deposits")
            if checkpoint == 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with SQLiteEventStore(db) as store:
            return store.head_position(), checkpoint

    try:
        head, checkpoint = asyncio.run(go())
    finally:
        del os.environ["ES_TEST_READ_MODEL"]
    assert (head, checkpoint) == (2, 2)


def _serve(*args: str) -> list[str]:
    return ["serve", *args, "--nats", "nats://127.0.0.1:1", "--allow-anonymous"]


def test_serve_names_a_store_url_it_cannot_open_in_one_line() -> None:
    with pytest.raises(SystemExit) as exited:
        main(_serve("tests.nats.service_app", "--store", "foo://bar"))
    assert str(exited.value.code).startswith(
        "eventstore serve: cannot open event store 'foo://bar'"
    )


def test_serve_names_a_store_folder_that_does_not_exist(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'nodir' / 's.db'}"
    with pytest.raises(SystemExit) as exited:
        main(_serve("tests.nats.service_app", "--store", store))
    message = str(exited.value.code)
    assert message.startswith("eventstore serve: cannot open event store")
    assert f"folder {str(tmp_path / 'nodir')!r} does not exist" in message


def test_serve_refuses_a_module_whose_services_return_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "no_services_app.py").write_text("def services(store):\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main(_serve("no_services_app", "--store", f"sqlite:///{tmp_path / 's.db'}"))
    message = str(exited.value.code)
    assert message.startswith("eventstore serve: no_services_app's services(store) returned no")
    assert "<Service>Server bindings" in message


def test_serve_says_no_nats_server_answered(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="eventstore serve: no NATS server answered at nats://"):
        main(_serve("tests.nats.service_app", "--store", f"sqlite:///{tmp_path / 's.db'}"))


def test_serve_keeps_the_traceback_of_a_bug_in_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "buggy_app.py").write_text("def services(store):\n    raise RuntimeError('bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="bug"):
        main(_serve("buggy_app", "--store", f"sqlite:///{tmp_path / 's.db'}"))


def test_load_factory_finds_a_module_in_the_folder_the_command_runs_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The console script's sys.path lacks the working folder (python -m puts it there):
    # the documented `eventstore serve examples.bankaccount.service` failed to import.
    (tmp_path / "served_from_cwd.py").write_text("def services(store):\n    return []\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    module, factory = load_factory("served_from_cwd")
    assert factory.__name__ == "services" and module.__file__ == str(
        tmp_path / "served_from_cwd.py"
    )
