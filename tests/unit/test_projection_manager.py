"""The projection runner: feeding, status and lag, failures, dead letters, pause, rebuild, run."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import (
    CheckpointAheadOfLogError,
    CheckpointedReadModel,
    ProjectionManager,
    ProjectionStatus,
    RebuildProgress,
    UnknownProjectionError,
    projection,
)
from eventstore.core.projections.manager import MAX_READS_PAST_HEAD
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel
from tests.support.bank import Account, account_repository, pb

DEPOSITED = pb.MoneyDeposited.DESCRIPTOR.full_name


class Balances:
    """A balance read model in SQLite; ``fail_at`` makes its handler raise on that position."""

    name = "balances"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute(
            "CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)"
        )
        ctx.connection.execute("DELETE FROM balances")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        if ctx.position == self.fail_at:
            raise ValueError(f"cannot handle position {ctx.position}")
        if event.event_type == pb.AccountOpened.DESCRIPTOR.full_name:
            amount = pb.AccountOpened.FromString(event.data).initial_balance
        elif event.event_type == DEPOSITED:
            amount = pb.MoneyDeposited.FromString(event.data).amount
        elif event.event_type == pb.MoneyWithdrawn.DESCRIPTOR.full_name:
            amount = -pb.MoneyWithdrawn.FromString(event.data).amount
        else:
            return
        ctx.connection.execute(
            "INSERT INTO balances VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance",
            (event.aggregate_id, amount),
        )


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(db_path) as s:
        yield s


def open_accounts(store: SQLiteEventStore, count: int, deposits: int = 2, start: int = 0) -> None:
    """``count`` accounts, each opened with 100 and given ``deposits`` deposits of 10."""
    repo = account_repository(store)
    for i in range(start, start + count):
        account = Account(f"acc-{i}")
        account.open(f"owner-{i}", 100)
        for _ in range(deposits):
            account.deposit(10)
        repo.save(account)


def balances(model: SQLiteReadModel) -> dict[str, int]:
    return dict(model.query("SELECT id, balance FROM balances ORDER BY id"))


def fresh_balances(store: SQLiteEventStore, tmp_path: Path) -> dict[str, int]:
    """The balances a brand-new rebuild into a new file gives: what every run must equal."""
    with SQLiteReadModel(tmp_path / f"fresh-{time.monotonic_ns()}.db") as model:
        manager = ProjectionManager(store)
        manager.register(Balances(), read_model=model)
        manager.catch_up()
        return balances(model)


@pytest.fixture
def model(tmp_path: Path) -> Iterator[SQLiteReadModel]:
    with SQLiteReadModel(tmp_path / "read.db") as m:
        yield m


def test_catch_up_feeds_a_projection_to_the_head_and_reports_ready(store, model) -> None:
    open_accounts(store, 3)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    assert manager.catch_up() == {"balances": 9}
    info = manager.status("balances")
    assert (info.status, info.checkpoint, info.lag_positions) == (ProjectionStatus.READY, 9, 0)
    assert balances(model) == {"acc-0": 120, "acc-1": 120, "acc-2": 120}


@pytest.mark.parametrize("typo", ["class", "function"])
def test_event_types_given_as_one_string_are_refused_at_register(store, typo) -> None:
    # Iterated, a str filters on its letters: the projection would handle nothing.
    class OneType(Balances):
        event_types = DEPOSITED

    manager = ProjectionManager(store)
    with pytest.raises(TypeError, match=r"'balances'.*event_types=\['testbank"):
        if typo == "class":
            manager.register(OneType())
        else:
            projection("balances", event_types=DEPOSITED)(lambda event, ctx: None)
    assert manager.names == []


def test_a_restarted_manager_continues_from_the_stored_checkpoint(store, model) -> None:
    open_accounts(store, 2)
    first = ProjectionManager(store)
    first.register(Balances(), read_model=model)
    first.catch_up()
    open_accounts(store, 1, start=2)
    second = ProjectionManager(store)
    second.register(Balances(), read_model=model)
    assert second.catch_up() == {"balances": 3}
    assert balances(model) == fresh_balances(store, model_dir(model))


def model_dir(model: SQLiteReadModel) -> Path:
    return Path(model.path).parent


def test_lag_counts_positions_and_seconds_behind_the_head(store, model) -> None:
    open_accounts(store, 1, deposits=0)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    manager.catch_up()
    time.sleep(0.05)
    open_accounts(store, 2, deposits=1, start=1)
    info = manager.status("balances")
    assert info.lag_positions == 4
    assert 0.04 <= info.lag_seconds < 30


def test_a_failing_handler_stops_the_projection_at_that_event(store, model) -> None:
    open_accounts(store, 3)  # positions 1..9
    manager = ProjectionManager(store, batch_size=4)
    manager.register(Balances(fail_at=6), read_model=model)
    manager.catch_up()
    info = manager.status("balances")
    assert info.status is ProjectionStatus.FAILED
    assert info.checkpoint == 5
    assert info.errors == 1
    assert info.last_error is not None
    assert (info.last_error.position, info.last_error.error_type) == (6, "ValueError")
    assert "cannot handle position 6" in info.last_error.message
    assert "resume('balances')" in str(info.last_error)
    assert balances(model) == {"acc-0": 120, "acc-1": 110}


def test_a_failed_projection_is_not_fed_until_resumed(store, model) -> None:
    open_accounts(store, 3)
    manager = ProjectionManager(store)
    manager.register(Balances(fail_at=6), read_model=model)
    manager.catch_up()
    assert manager.catch_up() == {"balances": 0}
    assert manager.status("balances").checkpoint == 5


def test_resume_after_the_fix_completes_and_equals_a_fresh_rebuild(store, model, tmp_path) -> None:
    open_accounts(store, 3)
    broken = Balances(fail_at=6)
    manager = ProjectionManager(store)
    manager.register(broken, read_model=model)
    manager.catch_up()
    broken.fail_at = None  # the fix
    manager.resume("balances")
    assert manager.catch_up() == {"balances": 4}
    assert manager.status("balances").status is ProjectionStatus.READY
    assert balances(model) == fresh_balances(store, tmp_path)


def test_other_projections_go_on_when_one_fails(store, model, tmp_path) -> None:
    open_accounts(store, 2)
    seen: list[int] = []

    @projection("positions")
    def positions(event: Event, ctx: ProjectionContext) -> None:
        seen.append(ctx.position)

    manager = ProjectionManager(store)
    manager.register(Balances(fail_at=2), read_model=model)
    manager.register(positions)
    manager.catch_up()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert manager.status("positions").status is ProjectionStatus.READY


def test_dead_letter_policy_sets_the_failing_event_aside_and_goes_on(store, model) -> None:
    open_accounts(store, 2)  # position 5 is acc-1's first deposit
    manager = ProjectionManager(store, batch_size=3)
    manager.register(Balances(fail_at=5), read_model=model, dead_letter=True)
    manager.catch_up()
    info = manager.status("balances")
    assert (info.status, info.checkpoint, info.dead_lettered) == (ProjectionStatus.READY, 6, 1)
    assert balances(model) == {"acc-0": 120, "acc-1": 110}
    [letter] = manager.dead_letters("balances")
    assert (letter.position, letter.event_type, letter.aggregate_id) == (5, DEPOSITED, "acc-1")
    assert "cannot handle position 5" in letter.message
    assert "Traceback" in letter.traceback


def test_dead_letters_survive_a_restart_in_the_read_model_database(store, tmp_path) -> None:
    open_accounts(store, 1)
    with SQLiteReadModel(tmp_path / "read.db") as model:
        manager = ProjectionManager(store)
        manager.register(Balances(fail_at=2), read_model=model, dead_letter=True)
        manager.catch_up()
    with SQLiteReadModel(tmp_path / "read.db") as reopened:
        assert [d.position for d in reopened.dead_letters("balances")] == [2]


def test_rebuild_after_a_fix_clears_dead_letters(store, model, tmp_path) -> None:
    open_accounts(store, 2)
    broken = Balances(fail_at=5)
    manager = ProjectionManager(store)
    manager.register(broken, read_model=model, dead_letter=True)
    manager.catch_up()
    broken.fail_at = None
    manager.rebuild("balances", show_progress=False)
    assert manager.dead_letters("balances") == []
    assert balances(model) == fresh_balances(store, tmp_path)


def test_pause_stops_feeding_and_resume_continues(store, model, tmp_path) -> None:
    open_accounts(store, 1)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    manager.catch_up()
    manager.pause("balances")
    open_accounts(store, 1, start=1)
    assert manager.catch_up() == {"balances": 0}
    assert manager.status("balances").status is ProjectionStatus.PAUSED
    manager.resume("balances")
    assert manager.catch_up() == {"balances": 3}
    assert balances(model) == fresh_balances(store, tmp_path)


def test_pause_from_a_progress_callback_stops_a_rebuild_between_batches(store, model) -> None:
    open_accounts(store, 4)
    manager = ProjectionManager(store, batch_size=2)
    manager.register(Balances(), read_model=model)
    info = manager.rebuild(
        "balances", progress=lambda p: manager.pause("balances"), show_progress=False
    )
    assert (info.status, info.checkpoint) == (ProjectionStatus.PAUSED, 2)


def test_rebuild_replays_everything_and_reports_progress(store, model, tmp_path) -> None:
    open_accounts(store, 5)
    manager = ProjectionManager(store, batch_size=4)
    manager.register(Balances(), read_model=model)
    manager.catch_up()
    model_conn_tamper(model)
    reports: list[RebuildProgress] = []
    info = manager.rebuild("balances", progress=reports.append, show_progress=False)
    assert info.status is ProjectionStatus.READY
    assert balances(model) == fresh_balances(store, tmp_path)
    assert [r.position for r in reports][:4] == [4, 8, 12, 15]
    assert reports[-1].fraction == 1.0 and reports[-1].events_handled == 15


def model_conn_tamper(model: SQLiteReadModel) -> None:
    """Corrupt the read model behind the runner's back, as a bug in old code would."""
    conn = sqlite3.connect(model.path)
    with conn:
        conn.execute("UPDATE balances SET balance = -1")
    conn.close()


def test_rebuild_draws_a_progress_bar_when_asked(store, model, capsys) -> None:
    open_accounts(store, 2)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    manager.rebuild("balances", show_progress=True)
    assert "rebuild balances" in capsys.readouterr().err


def test_rebuild_picks_up_appends_made_while_it_runs(store, model, tmp_path) -> None:
    open_accounts(store, 3)
    manager = ProjectionManager(store, batch_size=2)
    manager.register(Balances(), read_model=model)
    appended = []

    def append_once(progress: RebuildProgress) -> None:
        if not appended:
            appended.append(True)
            open_accounts(store, 2, start=10)

    manager.rebuild("balances", progress=append_once, show_progress=False)
    assert manager.status("balances").checkpoint == store.head_position() == 15
    assert balances(model) == fresh_balances(store, tmp_path)


def test_run_feeds_projections_live_until_stopped(store, model) -> None:
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)

    async def main() -> dict[str, int]:
        task = asyncio.create_task(manager.run(poll_interval=30))
        await asyncio.sleep(0.05)
        open_accounts(store, 2)
        deadline = time.monotonic() + 5
        while manager.status("balances").checkpoint < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        result = balances(model)
        manager.stop()
        await asyncio.wait_for(task, 5)
        return result

    assert asyncio.run(main()) == {"acc-0": 120, "acc-1": 120}
    assert manager.status("balances").status is ProjectionStatus.READY


def test_run_is_woken_by_commits_from_another_thread(store, model) -> None:
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)

    async def main() -> float:
        task = asyncio.create_task(manager.run(poll_interval=30))
        await asyncio.sleep(0.05)
        writer = threading.Thread(target=open_accounts, args=(store, 1))
        started = time.monotonic()
        writer.start()
        while manager.status("balances").checkpoint < 3 and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        manager.stop()
        await asyncio.wait_for(task, 5)
        writer.join(5)
        return elapsed

    assert asyncio.run(main()) < 3  # far below the 30 s poll interval


def test_a_plain_function_projection_with_a_reset_works(store) -> None:
    open_accounts(store, 2)
    totals: dict[str, int] = {}

    @projection("deposits", event_types=[pb.MoneyDeposited])
    def deposits(event: Event, ctx: ProjectionContext) -> None:
        amount = pb.MoneyDeposited.FromString(event.data).amount
        totals[event.aggregate_id] = totals.get(event.aggregate_id, 0) + amount

    @deposits.on_reset
    def _(ctx: ProjectionContext) -> None:
        totals.clear()

    manager = ProjectionManager(store)
    manager.register(deposits)
    manager.catch_up()
    assert totals == {"acc-0": 20, "acc-1": 20}
    manager.rebuild("deposits", show_progress=False)
    assert totals == {"acc-0": 20, "acc-1": 20}


class AccountProjectionBuilder:
    """Shaped like the generated builder: On<Event> registrations, build() -> a Projection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, object] = {}
        self.on_reset = None

    def on_money_deposited(self, fn):  # type: ignore[no-untyped-def]
        self.handlers[DEPOSITED] = fn
        return self

    def build(self):  # type: ignore[no-untyped-def]
        builder = self

        class Built:
            name = builder.name

            def handle(self, event: Event, ctx: ProjectionContext) -> None:
                fn = builder.handlers.get(event.event_type)
                if fn is not None:
                    fn(pb.MoneyDeposited.FromString(event.data), event, ctx)  # type: ignore[operator]

            def reset(self, ctx: ProjectionContext) -> None:
                pass

        return Built()


def test_a_built_projection_object_works(store) -> None:
    open_accounts(store, 1, deposits=3)
    amounts: list[int] = []
    built = (
        AccountProjectionBuilder("deposits")
        .on_money_deposited(lambda msg, event, ctx: amounts.append(msg.amount))
        .build()
    )
    manager = ProjectionManager(store)
    manager.register(built)
    manager.catch_up()
    assert amounts == [10, 10, 10]


def test_checkpoints_in_a_checkpoint_store_survive_a_restart(store) -> None:
    open_accounts(store, 1)
    seen: list[int] = []

    @projection("mailer")
    def mailer(event: Event, ctx: ProjectionContext) -> None:
        seen.append(ctx.position)

    first = ProjectionManager(store, default_read_model=CheckpointedReadModel(store))
    first.register(mailer)
    first.catch_up()
    open_accounts(store, 1, start=1)
    second = ProjectionManager(store, default_read_model=CheckpointedReadModel(store))
    second.register(mailer)
    second.catch_up()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert store.load_checkpoint("mailer") == 6


def test_a_failing_in_memory_projection_keeps_its_checkpoint_before_the_event(store) -> None:
    open_accounts(store, 1)

    @projection("picky")
    def picky(event: Event, ctx: ProjectionContext) -> None:
        if ctx.position == 3:
            raise RuntimeError("no")

    manager = ProjectionManager(store)
    manager.register(picky)
    manager.catch_up()
    info = manager.status("picky")
    assert (info.status, info.checkpoint, info.last_error.position) == (  # type: ignore[union-attr]
        ProjectionStatus.FAILED,
        2,
        3,
    )


def test_metrics_report_handled_errors_and_lag_per_projection(store, model) -> None:
    open_accounts(store, 2)
    manager = ProjectionManager(store)
    manager.register(Balances(fail_at=4), read_model=model)
    manager.catch_up()
    points = {p.name: p for p in manager.metrics()}
    assert points["eventsourcing.projection.events_handled"].value == 3
    assert points["eventsourcing.projection.errors"].value == 1
    assert points["eventsourcing.projection.lag"].value == 3
    assert points["eventsourcing.projection.lag"].attributes == {"projection": "balances"}


def test_registering_an_object_without_reset_names_what_is_missing(store) -> None:
    class NoReset:
        name = "half"

        def handle(self, event: Event, ctx: ProjectionContext) -> None:
            pass

    with pytest.raises(TypeError, match=r"projection 'half' .* has no method reset"):
        ProjectionManager(store).register(NoReset())  # type: ignore[arg-type]


def test_registering_two_projections_with_one_name_is_refused(store, model) -> None:
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    with pytest.raises(ValueError, match="'balances' is already registered"):
        manager.register(Balances(), read_model=model)


def test_asking_for_an_unknown_projection_lists_the_known_ones(store, model) -> None:
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    with pytest.raises(UnknownProjectionError, match=r"'balanse'.*registered: balances") as info:
        manager.status("balanse")
    assert info.value.known == ["balances"]


def test_status_reads_catching_up_when_events_arrived_since_it_caught_up(store, model) -> None:
    open_accounts(store, 1)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    manager.catch_up()
    open_accounts(store, 1, start=1)
    assert manager.status("balances").status is ProjectionStatus.CATCHING_UP
    manager.catch_up()
    assert manager.status("balances").status is ProjectionStatus.READY


def test_dead_letter_policy_works_for_projections_without_a_database(store) -> None:
    open_accounts(store, 1)
    seen: list[int] = []

    @projection("picky")
    def picky(event: Event, ctx: ProjectionContext) -> None:
        if ctx.position == 2:
            raise RuntimeError("no")
        seen.append(ctx.position)

    manager = ProjectionManager(store)
    manager.register(picky, dead_letter=True)
    manager.catch_up()
    assert seen == [1, 3]
    assert [d.position for d in manager.dead_letters("picky")] == [2]
    assert manager.status("picky").status is ProjectionStatus.READY


def test_is_ready_only_while_caught_up_with_the_head(store, model) -> None:
    open_accounts(store, 1)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    assert not manager.status("balances").is_ready
    manager.catch_up()
    assert manager.status("balances").is_ready
    open_accounts(store, 1, start=1)
    assert not manager.status("balances").is_ready


def test_rebuild_progress_reports_its_rate_in_events_per_second(store, model) -> None:
    open_accounts(store, 5)
    manager = ProjectionManager(store, batch_size=4)
    manager.register(Balances(), read_model=model)
    reports: list[RebuildProgress] = []
    manager.rebuild("balances", progress=reports.append, show_progress=False)
    last = reports[-1]
    assert last.elapsed_seconds > 0
    assert last.events_per_second == pytest.approx(last.events_handled / last.elapsed_seconds)


def test_rebuild_progress_rate_is_zero_before_any_time_has_passed() -> None:
    assert RebuildProgress("balances", 0, 10, 0, 0.0).events_per_second == 0.0


def test_an_unregistered_projection_is_no_longer_fed_or_known(store, model) -> None:
    open_accounts(store, 1)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    manager.catch_up()
    manager.unregister("balances")
    open_accounts(store, 1, start=1)
    assert manager.catch_up() == {}
    assert manager.names == []
    assert model.load_checkpoint("balances") == 3
    with pytest.raises(UnknownProjectionError):
        manager.status("balances")


def test_a_projection_registered_again_after_unregister_continues_from_its_checkpoint(
    store, model, tmp_path
) -> None:
    open_accounts(store, 1)
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    manager.catch_up()
    manager.unregister("balances")
    open_accounts(store, 1, start=1)
    manager.register(Balances(), read_model=model)
    assert manager.catch_up() == {"balances": 3}
    assert balances(model) == fresh_balances(store, tmp_path)


def test_unregistering_an_unknown_projection_lists_the_known_ones(store, model) -> None:
    manager = ProjectionManager(store)
    manager.register(Balances(), read_model=model)
    with pytest.raises(UnknownProjectionError, match="registered: balances"):
        manager.unregister("balanse")
    assert manager.names == ["balances"]


# -- a read model made from another log -----------------------------------------------------
def read_model_of_another_log(tmp_path: Path) -> Path:
    """A read model file whose checkpoint is 6, made from a store that is gone."""
    path = tmp_path / "outlived.db"
    with SQLiteEventStore(tmp_path / "gone.db") as gone, SQLiteReadModel(path) as model:
        open_accounts(gone, 2)  # 6 events
        manager = ProjectionManager(gone)
        manager.register(Balances(), read_model=model)
        manager.catch_up()
    return path


def test_a_checkpoint_past_the_head_of_the_log_stops_the_projection_naming_the_fix(
    store, tmp_path
) -> None:
    open_accounts(store, 1, start=5)  # a fresh store: 3 events
    with SQLiteReadModel(read_model_of_another_log(tmp_path)) as model:
        manager = ProjectionManager(store)
        manager.register(Balances(), read_model=model)
        handled = manager.catch_up()
        info = manager.status("balances")
        rows = balances(model)
    assert handled == {"balances": 0}
    assert info.status is ProjectionStatus.FAILED
    assert info.last_error is not None
    error = info.last_error.error
    assert isinstance(error, CheckpointAheadOfLogError)
    assert (error.name, error.checkpoint, error.head) == ("balances", 6, 3)
    assert "rebuild('balances')" in str(error) and "position 3" in str(error)
    assert rows == {"acc-0": 120, "acc-1": 120}  # left as it was, for the rebuild to replace


def test_resume_does_not_feed_a_projection_whose_checkpoint_is_past_the_head(
    store, tmp_path
) -> None:
    open_accounts(store, 1, start=5)
    with SQLiteReadModel(read_model_of_another_log(tmp_path)) as model:
        manager = ProjectionManager(store)
        manager.register(Balances(), read_model=model)
        manager.resume("balances")
        manager.catch_up()
        open_accounts(store, 2, start=6)  # the log grows past the checkpoint: still not fed
        manager.catch_up()
        status = manager.status("balances").status
        rows = balances(model)
    assert status is ProjectionStatus.FAILED
    assert rows == {"acc-0": 120, "acc-1": 120}


def test_rebuild_of_a_projection_past_the_head_replays_this_log(store, tmp_path) -> None:
    open_accounts(store, 1, start=5)
    with SQLiteReadModel(read_model_of_another_log(tmp_path)) as model:
        manager = ProjectionManager(store)
        manager.register(Balances(), read_model=model)
        before = manager.status("balances").status
        after = manager.rebuild("balances", show_progress=False)
        rows = balances(model)
    assert before is ProjectionStatus.FAILED
    assert (after.status, after.checkpoint) == (ProjectionStatus.READY, 3)
    assert rows == {"acc-5": 120}


# -- appends made while catch_up() or rebuild() runs ----------------------------------------
TICK = "testbank.v1.Tick"


def tick(store: SQLiteEventStore) -> None:
    store.append(
        "clock", "Clock", store.stream_version("clock"), [NewEvent(new_event_id(), TICK, b"")]
    )


class Positions:
    """Keeps the positions it handles in memory; appends one event while handling ``append_at``
    (every event, with ``always``), as another writer committing meanwhile would."""

    name = "positions"

    def __init__(self, store: SQLiteEventStore, append_at: int = 0, always: bool = False) -> None:
        self.store = store
        self.append_at = append_at
        self.always = always
        self.handled: list[int] = []

    def reset(self, ctx: ProjectionContext) -> None:
        self.handled.clear()

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        self.handled.append(ctx.position)
        if self.always or ctx.position == self.append_at:
            tick(self.store)


def test_catch_up_picks_up_an_append_committed_while_its_last_batch_was_handled(store) -> None:
    for _ in range(2):
        tick(store)
    positions = Positions(store, append_at=2)
    manager = ProjectionManager(store)
    manager.register(positions)
    manager.catch_up()
    info = manager.status("positions")
    assert positions.handled == [1, 2, 3]
    assert (info.status, info.checkpoint, info.lag_positions) == (ProjectionStatus.READY, 3, 0)


def test_rebuild_picks_up_an_append_committed_while_its_last_batch_was_handled(store) -> None:
    for _ in range(2):
        tick(store)
    positions = Positions(store)
    manager = ProjectionManager(store)
    manager.register(positions)
    manager.catch_up()
    positions.append_at = 2
    info = manager.rebuild("positions", show_progress=False)
    assert positions.handled == [1, 2, 3]
    assert (info.status, info.checkpoint, info.lag_positions) == (ProjectionStatus.READY, 3, 0)


def test_catch_up_ends_under_a_writer_that_never_pauses(store) -> None:
    for _ in range(2):
        tick(store)
    positions = Positions(store, always=True)  # each event handled appends another
    manager = ProjectionManager(store)
    manager.register(positions)
    handled = manager.catch_up()["positions"]
    info = manager.status("positions")
    # The first page (the head when called), then MAX_READS_PAST_HEAD more pages of 2.
    assert handled == 2 * (MAX_READS_PAST_HEAD + 1)
    assert positions.handled == list(range(1, handled + 1))
    assert info.status is ProjectionStatus.CATCHING_UP and info.lag_positions == 2
