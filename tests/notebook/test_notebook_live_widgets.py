"""Event log, time travel and projection monitor, headless."""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from typing import Any

import pytest

from eventstore import AggregateNotFoundError, EveryNEvents, SQLiteEventStore
from eventstore.core.errors import VersionNotFoundError
from eventstore.core.projections import ProjectionManager, projection
from eventstore.notebook.state import MISSING
from eventstore.notebook.widgets import EventLog, ProjectionMonitor, TimeTravel
from tests.support.bank import EVENT_TYPES, Account, account_repository


def open_account(store: SQLiteEventStore, account_id: str, owner: str, **kwargs: Any) -> Account:
    repo = account_repository(store, **kwargs)
    account = Account(account_id)
    account.open(owner, 100)
    repo.save(account)
    return account


def deposit(store: SQLiteEventStore, account_id: str, amount: int, **kwargs: Any) -> None:
    repo = account_repository(store, **kwargs)
    account = repo.load(account_id)
    account.deposit(amount)
    repo.save(account)


# -- event log ----------------------------------------------------------------------------------
def test_the_event_log_shows_events_already_stored(store):
    open_account(store, "acc-1", "Ada")
    log = EventLog(store, EVENT_TYPES)
    assert [r["event"] for r in log.rows()] == ["AccountOpened"]
    assert "owner='Ada'" in html.unescape(log.table.value)


def test_the_event_log_updates_when_an_event_is_appended(store):
    log = EventLog(store, EVENT_TYPES)
    assert "no events yet" in log.table.value
    open_account(store, "acc-1", "Ada")
    deposit(store, "acc-1", 25)
    assert [r["event"] for r in log.rows()] == ["MoneyDeposited", "AccountOpened"]
    assert "amount=25" in log.table.value
    assert "showing all 2 events" in log.summary.value


def test_the_event_log_of_a_tenants_view_follows_one_aggregate_by_its_plain_id(tmp_path):
    from eventstore.tenancy import TenantEventSource, with_tenant

    with SQLiteEventStore(tmp_path / "t.db") as shared:
        repo = account_repository(shared, tenant_isolation=True)
        with with_tenant("acme"):
            account = repo.factory("acc-1")
            account.open("Ada", 100)
            repo.save(account)
        log = EventLog(TenantEventSource(shared, "acme"), EVENT_TYPES, aggregate_id="acc-1")
        assert [r["aggregate"] for r in log.rows()] == ["acme::acc-1"]
        with with_tenant("beta"):  # another tenant's acc-1: not in acme's log
            other = repo.factory("acc-1")
            other.open("Eve", 1)
            repo.save(other)
        with with_tenant("acme"):
            account = repo.load("acc-1")
            account.deposit(5)
            repo.save(account)  # seen live, through the commit listener
        assert [(r["aggregate"], r["event"]) for r in log.rows()] == [
            ("acme::acc-1", "MoneyDeposited"),
            ("acme::acc-1", "AccountOpened"),
        ]


def test_the_event_log_keeps_only_the_last_max_rows(store):
    log = EventLog(store, EVENT_TYPES, max_rows=2)
    open_account(store, "acc-1", "Ada")
    for amount in (1, 2, 3):
        deposit(store, "acc-1", amount)
    assert [r["version"] for r in log.rows()] == [4, 3]
    assert log.total == 4


def test_the_event_log_counts_every_stored_event_not_only_the_rows_it_shows(store):
    open_account(store, "acc-1", "Ada")
    for amount in range(1, 7):
        deposit(store, "acc-1", amount)
    log = EventLog(store, EVENT_TYPES, max_rows=5)
    assert log.total == 7
    assert "showing the last 5 of 7 events, log head at position 7" in log.summary.value
    deposit(store, "acc-1", 9)
    assert "showing the last 5 of 8 events, log head at position 8" in log.summary.value


def test_the_event_log_of_one_type_counts_only_that_type(store):
    open_account(store, "acc-1", "Ada")
    for amount in (1, 2, 3):
        deposit(store, "acc-1", amount)
    log = EventLog(store, EVENT_TYPES, event_type="MoneyDeposited", max_rows=2)
    assert log.total == 3
    assert "showing the last 2 of 3 events" in log.summary.value


def test_the_event_log_of_one_aggregate_ignores_the_others(store):
    log = EventLog(store, EVENT_TYPES, aggregate_id="acc-2")
    open_account(store, "acc-1", "Ada")
    open_account(store, "acc-2", "Bob")
    assert [r["aggregate"] for r in log.rows()] == ["acc-2"]


def test_a_closed_event_log_stops_listening(store):
    log = EventLog(store, EVENT_TYPES)
    log.close()
    open_account(store, "acc-1", "Ada")
    assert log.rows() == []


def test_a_failing_redraw_is_shown_in_the_log_and_never_fails_the_append(store):
    log = EventLog(store, EVENT_TYPES)

    def broken_decode(event):
        raise RuntimeError("decoder exploded")

    log._decode = broken_decode  # stands for any fault while redrawing
    open_account(store, "acc-1", "Ada")  # must not raise
    assert "decoder exploded" in log.error.value
    assert store.stream_version("acc-1") == 1


def test_the_event_log_sees_other_writers_on_refresh(store, tmp_path):
    log = EventLog(store, EVENT_TYPES)
    with SQLiteEventStore(store.path) as other:
        open_account(other, "acc-9", "Zed")
    assert log.rows() == []
    assert log.refresh() == 1
    assert [r["aggregate"] for r in log.rows()] == ["acc-9"]


# -- time travel --------------------------------------------------------------------------------
@pytest.fixture
def history(store):
    """acc-1: opened with 100, then deposits 10, 20, 30, 40, 50; snapshots every 2 versions."""
    snapshots = {"snapshot_store": store, "snapshot_strategy": EveryNEvents(2)}
    open_account(store, "acc-1", "Ada", **snapshots)
    for amount in (10, 20, 30, 40, 50):
        deposit(store, "acc-1", amount, **snapshots)
    return account_repository(store, snapshot_store=store)


def test_time_travel_starts_at_the_latest_version(history):
    travel = TimeTravel(history, "acc-1")
    assert travel.slider.max == 6
    assert travel.view.version == 6
    assert travel.view.state["balance"] == 250


def test_moving_the_slider_shows_the_state_at_that_version(history):
    travel = TimeTravel(history, "acc-1")
    travel.slider.value = 3
    assert travel.view.state["balance"] == 130
    assert "130" in travel.state_view.value
    assert "version <b>3</b> of 6" in travel.event_view.value
    assert "MoneyDeposited" in travel.event_view.value


def test_time_travel_shows_what_the_event_changed(history):
    travel = TimeTravel(history, "acc-1", version=3)
    changes = {c.path: (c.before, c.after) for c in travel.view.changes}
    assert changes == {"balance": (110, 130), "history[2]": (MISSING, "MoneyDeposited")}
    assert "110 → 130" in travel.changes_view.value


def test_time_travel_marks_the_versions_with_snapshots(history):
    travel = TimeTravel(history, "acc-1")
    assert travel.snapshot_versions == [2, 4, 6]
    assert "snapshots at versions 2, 4, 6" in travel.strip.value
    assert travel.strip.value.count("◆") == 3 + 1  # three cells and the legend


def test_time_travel_loads_from_the_nearest_snapshot_below_the_version(history):
    travel = TimeTravel(history, "acc-1", version=5)
    assert travel.view.snapshot_version == 4
    assert "loaded from the snapshot at version 4" in travel.event_view.value


def test_time_travel_of_an_unknown_aggregate_fails_naming_it(history):
    with pytest.raises(AggregateNotFoundError, match="'acc-404'"):
        TimeTravel(history, "acc-404")


def test_time_travel_refresh_picks_up_new_versions(history, store):
    travel = TimeTravel(history, "acc-1")
    deposit(store, "acc-1", 1)
    travel.refresh()
    assert travel.slider.max == 7
    travel.slider.value = 7
    assert travel.view.state["balance"] == 251


# -- projection monitor ------------------------------------------------------------------------
@pytest.fixture
def manager(store):
    manager = ProjectionManager(store)
    seen: list[int] = []

    @projection("counter")
    def counter(event, ctx):
        seen.append(event.position)

    @projection("picky")
    def picky(event, ctx):
        if event.version == 2:
            raise ValueError("cannot handle version 2")

    manager.register(counter)
    manager.register(picky)
    return manager


def test_the_monitor_shows_each_projection_checkpoint_head_and_lag(store, manager):
    open_account(store, "acc-1", "Ada")
    deposit(store, "acc-1", 5)
    monitor = ProjectionMonitor(manager, show_chart=False)
    assert {s.projection: s.lag for s in monitor.samples} == {"counter": 2, "picky": 2}
    manager.catch_up()
    taken = monitor.refresh()
    assert {s.projection: (s.checkpoint, s.head, s.lag) for s in taken} == {
        "counter": (2, 2, 0),
        "picky": (1, 2, 1),
    }
    assert "counter" in monitor.table.value and "READY" in monitor.table.value


def test_the_monitor_shows_the_last_error_of_a_failed_projection(store, manager):
    open_account(store, "acc-1", "Ada")
    deposit(store, "acc-1", 5)
    manager.catch_up()
    monitor = ProjectionMonitor(manager, show_chart=False)
    assert "FAILED" in monitor.table.value
    assert "cannot handle version 2" in monitor.errors.value


def test_the_monitor_draws_the_lag_chart_from_its_samples(store, manager):
    open_account(store, "acc-1", "Ada")
    monitor = ProjectionMonitor(manager)
    manager.catch_up()
    monitor.refresh()
    assert monitor.chart_view is not None and monitor.chart.children == (monitor.chart_view,)
    spec = monitor.chart_view.spec
    assert spec["mark"]["type"] == "line"
    assert {row["projection"] for row in spec["datasets"][next(iter(spec["datasets"]))]} == {
        s.name for s in manager.statuses()
    }
    assert len(monitor.samples) == 4


@dataclass
class Status:
    name: str
    status: str
    checkpoint: int
    head: int
    lag: int
    last_error: str | None = None


def test_the_monitor_reads_any_function_returning_status_like_objects():
    statuses = [Status("bus-reader", "CATCHING_UP", 3, 10, 7)]
    monitor = ProjectionMonitor(lambda: statuses, show_chart=False)
    (sample,) = monitor.samples
    assert (sample.projection, sample.lag) == ("bus-reader", 7)
    assert "CATCHING_UP" in monitor.table.value


def test_the_monitor_refreshes_on_the_running_loop_until_stopped(store, manager):
    async def scenario() -> int:
        monitor = ProjectionMonitor(manager, interval=0.01, show_chart=False)
        monitor.start()
        await asyncio.sleep(0.2)
        monitor.stop()
        count = monitor.refreshes
        await asyncio.sleep(0.05)
        assert monitor.refreshes == count
        return count

    assert asyncio.run(scenario()) >= 5


def test_starting_the_monitor_without_a_running_loop_says_what_to_do(manager):
    monitor = ProjectionMonitor(manager, show_chart=False)
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        monitor.start()


def test_time_travel_takes_the_plain_id_of_a_tenant_isolated_repository(tmp_path):
    from eventstore.tenancy import with_tenant

    with SQLiteEventStore(tmp_path / "t.db") as shared:
        snapshots = {"tenant_isolation": True, "snapshot_strategy": EveryNEvents(2)}
        repo = account_repository(shared, **snapshots)
        for tenant, owner, amounts in (("acme", "Ada", (10, 20)), ("beta", "Eve", (1,))):
            with with_tenant(tenant):  # both tenants have an acc-1
                account = repo.factory("acc-1")
                account.open(owner, 100)
                for amount in amounts:  # acme: a snapshot at version 2
                    account.deposit(amount)
                    repo.save(account)
        with with_tenant("acme"):
            travel = TimeTravel(repo, "acc-1", poll_interval=None)
            assert repo.load("acc-1").version == 3
        assert travel.slider.max == 3
        assert travel.view.state["owner"] == "Ada"
        assert travel.view.state["balance"] == 130
        assert travel.snapshot_versions == [2]
        assert "MoneyDeposited</b>(amount=20)" in travel.event_view.value
        assert "acme::acc-1" not in travel.static_text()  # the widget speaks the plain id

        travel.slider.value = 2  # a later move, outside the with block: still acme's acc-1
        assert travel.view.state["balance"] == 110
        assert travel.view.snapshot_version == 2
        assert "version <b>2</b> of 3" in travel.event_view.value
        (rows,) = travel.timeline().chart.to_dict()["datasets"].values()
        assert [r["version"] for r in rows] == [1, 2, 3]  # the chart reads acme's stream too
        with with_tenant("beta"):
            assert TimeTravel(repo, "acc-1", poll_interval=None).view.state["owner"] == "Eve"


def test_time_travel_of_a_tenant_isolated_repository_needs_a_tenant(tmp_path):
    from eventstore.core.errors import TenantMismatchError

    with SQLiteEventStore(tmp_path / "t.db") as shared:
        repo = account_repository(shared, tenant_isolation=True)
        with pytest.raises(TenantMismatchError, match="no tenant is set"):
            TimeTravel(repo, "acc-1", poll_interval=None)


@pytest.mark.parametrize("version", [0, -3, 99])
def test_time_travel_refuses_a_version_the_stream_does_not_have(history, version):
    with pytest.raises(
        VersionNotFoundError, match=rf"'acc-1' has no version {version}: .* from 1 to 6"
    ):
        TimeTravel(history, "acc-1", version=version, poll_interval=None)


def test_time_travel_refuses_a_version_that_is_not_a_whole_number(history):
    with pytest.raises(TypeError, match=r"version must be a whole number .*got float 2.5"):
        TimeTravel(history, "acc-1", version=2.5, poll_interval=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [float("nan"), float("inf"), -1.0])
def test_time_travel_refuses_a_poll_interval_that_is_not_a_positive_finite_number(
    history, interval
):
    with pytest.raises(ValueError, match=r"poll_interval must be a positive, finite number"):
        TimeTravel(history, "acc-1", poll_interval=interval)


# -- widgets follow the store --------------------------------------------------------------------
def test_time_travel_marks_follow_snapshots_deleted_after_it_was_drawn(history, store):
    travel = TimeTravel(history, "acc-1", version=5)
    assert travel.view.snapshot_version == 4
    store.keep_last_snapshots("acc-1", 1)  # keeps only the snapshot at 6

    travel.slider.value = 4  # any move re-reads the store first
    travel.slider.value = 5

    assert travel.snapshot_versions == [6]
    assert "snapshots at versions 6" in travel.strip.value
    assert travel.view.snapshot_version == 0
    assert "replayed 5 event(s) from the start" in travel.event_view.value


def test_time_travel_polls_the_store_while_the_loop_runs(history, store):
    async def scenario() -> TimeTravel:
        travel = TimeTravel(history, "acc-1", poll_interval=0.02)
        assert travel.polling
        deposit(store, "acc-1", 1, snapshot_store=store, snapshot_strategy=EveryNEvents(1))
        await asyncio.sleep(0.2)
        travel.close()
        return travel

    travel = asyncio.run(scenario())
    assert travel.snapshot_versions == [2, 4, 6, 7]
    assert travel.slider.max == 7
    assert not travel.polling


def test_time_travel_stops_polling_and_says_why_when_the_store_closes(history, store):
    async def scenario() -> TimeTravel:
        travel = TimeTravel(history, "acc-1", poll_interval=0.02)
        store.close()
        await asyncio.sleep(0.1)
        return travel

    travel = asyncio.run(scenario())
    assert not travel.polling
    assert "stopped following the store: StoreClosedError" in travel.event_view.value


def test_the_monitor_ends_on_the_managers_status_when_stopped(store, manager):
    async def scenario() -> ProjectionMonitor:
        monitor = ProjectionMonitor(manager, interval=60, show_chart=False)
        monitor.start()
        await asyncio.sleep(0.01)  # the first reading, then nothing for a minute
        open_account(store, "acc-1", "Ada")
        manager.catch_up()
        monitor.stop()
        return monitor

    monitor = asyncio.run(scenario())
    shown = [(s.name, s.status, s.lag_positions) for s in monitor.statuses]
    assert shown == [(s.name, s.status, s.lag_positions) for s in manager.statuses()]
    assert "CATCHING_UP" not in monitor.table.value


def test_the_monitor_shows_a_fixed_error_as_resolved_not_red(store):
    manager = ProjectionManager(store)
    broken = [True]

    @projection("fragile")
    def fragile(event, ctx):
        if broken[0]:
            raise ValueError("database down")

    manager.register(fragile)
    open_account(store, "acc-1", "Ada")
    manager.catch_up()
    monitor = ProjectionMonitor(manager, show_chart=False)
    assert "failed at" in monitor.errors.value and "#b00" in monitor.errors.value

    broken[0] = False
    manager.resume("fragile")
    manager.catch_up()
    monitor.refresh()

    assert "#b00" not in monitor.errors.value
    assert "since resolved" in monitor.errors.value and "database down" in monitor.errors.value


# -- a static picture beside the live view --------------------------------------------------------
VIEW = "application/vnd.jupyter.widget-view+json"


def test_time_travel_mimebundle_carries_a_static_html_picture(history):
    bundle = TimeTravel(history, "acc-1", version=3)._repr_mimebundle_()
    assert VIEW in bundle
    assert "version <b>3</b> of 6" in bundle["text/html"]
    assert "snapshots at versions 2, 4, 6" in bundle["text/html"]
    assert bundle["text/plain"] == (
        "TimeTravel: aggregate 'acc-1' at version 3 of 6 (snapshots: 2, 4, 6)"
    )


def test_monitor_and_event_log_mimebundles_carry_static_html(store, manager):
    open_account(store, "acc-1", "Ada")
    manager.catch_up()
    monitor = ProjectionMonitor(manager)
    bundle = monitor._repr_mimebundle_()
    assert VIEW in bundle and "<svg" not in bundle["text/html"]
    assert "counter" in bundle["text/html"] and "READY" in bundle["text/html"]
    assert bundle["text/plain"].startswith("ProjectionMonitor: counter READY lag 0")

    log_bundle = EventLog(store, EVENT_TYPES)._repr_mimebundle_()
    assert VIEW in log_bundle and "owner=&#x27;Ada&#x27;" in log_bundle["text/html"]
    assert not log_bundle["text/plain"].startswith("EventLog(children")


def test_moving_the_slider_after_the_store_closed_says_so_in_the_widget(history, store):
    travel = TimeTravel(history, "acc-1", version=6)
    store.close()
    travel.slider.value = 2
    assert "cannot show version 2: StoreClosedError" in travel.event_view.value


# -- a rejected argument leaves nothing on stderr ------------------------------------------
def _unraisable_after(make: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What Python reports as "Exception ignored" while the half-made widget is collected."""
    import gc
    import sys

    seen: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(repr(u.exc_value)))
    with pytest.raises(ValueError):
        make()
    gc.collect()
    return seen


def test_time_travel_rejecting_its_poll_interval_reports_nothing_when_collected(
    history, monkeypatch
):
    made = lambda: TimeTravel(history, "acc-1", poll_interval=0)  # noqa: E731
    assert _unraisable_after(made, monkeypatch) == []


def test_the_monitor_rejecting_its_interval_reports_nothing_when_collected(manager, monkeypatch):
    made = lambda: ProjectionMonitor(manager, interval=0)  # noqa: E731
    assert _unraisable_after(made, monkeypatch) == []
