"""altair charts: their specs, the 5,000-row limit, and a rendered PNG of each type.

The PNGs are written to the test's tmp folder. With ES_UPDATE_DOC_IMAGES=1 they
are also copied to docs/images/, where docs/notebook.md shows them (and a
person looks at them); otherwise a test run leaves the source tree alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import altair as alt
import pandas as pd
import pytest

from eventstore import Event, EveryNEvents, SQLiteEventStore
from eventstore.notebook import charts, frames
from eventstore.notebook.charts import LagSample
from tests.support.bank import EVENT_TYPES, Account, account_repository, pb

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bank_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteEventStore]:
    """Six accounts with a few dozen commands, snapshots every 4 events."""
    path = tmp_path_factory.mktemp("charts") / "bank.db"
    with SQLiteEventStore(path, synchronous="NORMAL") as store:
        repo = account_repository(store, snapshot_store=store, snapshot_strategy=EveryNEvents(4))
        owners = ["Ada", "Bob", "Cy", "Dee", "Eve", "Finn"]
        for i, owner in enumerate(owners):
            account = Account(f"acc-{i + 1}")
            account.open(owner, 100)
            repo.save(account)
        for step in range(36):
            account = repo.load(f"acc-{step % 5 + 1}" if step % 7 else "acc-1")
            if step % 4 == 3:
                account.withdraw(10)
            else:
                account.deposit(5 + step)
            repo.save(account)
        yield store


def synthetic_events(count: int, aggregates: int) -> list[Event]:
    """``count`` events spread over ten minutes and ``aggregates`` streams, no store needed."""
    start = 1_789_999_980_000_000  # on a whole minute
    step = 600_000_000 // count
    data = pb.MoneyDeposited(amount=1).SerializeToString()
    return [
        Event(
            f"e{i}",
            f"agg-{i % aggregates}",
            "Account",
            "testbank.v1.MoneyDeposited" if i % 3 else "testbank.v1.MoneyWithdrawn",
            i // aggregates + 1,
            i + 1,
            start + i * step,
            data,
        )
        for i in range(count)
    ]


def lag_samples(count: int, seconds: float = 1.0) -> list[LagSample]:
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    samples = []
    for i in range(count):
        at = start + timedelta(seconds=i * seconds)
        head = 100 + 40 * i
        fast_lag = max(0, 120 - 4 * i) if i < 40 else (i % 7) * 3
        slow_lag = 30 + 6 * i if i < 45 else max(0, 300 - 25 * (i - 45))
        samples.append(LagSample("balances", at, head - fast_lag, head))
        samples.append(LagSample("statements", at, head - slow_lag, head))
    return samples


def top_level_data(spec: dict) -> list[dict]:
    (values,) = spec["datasets"].values()
    return values


# -- specs ---------------------------------------------------------------------------------------
def test_event_timeline_puts_time_across_aggregates_down_and_colours_by_event_type(bank_store):
    spec = charts.event_timeline(frames.events_frame(bank_store.read_all(), EVENT_TYPES)).to_dict()
    assert spec["mark"]["type"] == "circle"
    assert spec["encoding"]["y"]["field"] == "aggregate_id"
    assert spec["encoding"]["color"]["field"] == "event"
    assert spec["encoding"]["x"]["field"] in ("timestamp", "timestamp_s")
    assert len(top_level_data(spec)) == bank_store.count_events()


def test_event_timeline_counts_per_time_bucket_above_5000_events():
    frame = frames.events_frame(synthetic_events(6000, 10))
    with pytest.raises(alt.MaxRowsError):
        alt.Chart(frame[["timestamp", "aggregate_id"]]).mark_point().to_dict()
    spec = charts.event_timeline(frame).to_dict()
    assert spec["encoding"]["size"]["field"] == "events"
    rows = top_level_data(spec)
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000


def test_version_timeline_counts_per_version_bucket_above_5000_events():
    frame = frames.events_frame(synthetic_events(6001, 1))
    spec = charts.version_timeline(frame).to_dict()
    assert spec["encoding"]["size"]["field"] == "events"
    rows = top_level_data(spec)
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6001
    assert max(r["last_version"] for r in rows) == 6001
    assert "events counted per 13 versions" in spec["title"]["subtitle"]


def test_event_timeline_shows_the_busiest_aggregates_when_there_are_many():
    frame = frames.events_frame(synthetic_events(400, 100))
    chart = charts.event_timeline(frame, max_aggregates=10)
    spec = chart.to_dict()
    assert len({r["aggregate_id"] for r in top_level_data(spec)}) == 10
    assert "10 busiest of 100 aggregates" in spec["title"]["subtitle"][0]


def test_event_rate_counts_events_per_bucket_by_type():
    frame = frames.events_frame(synthetic_events(600, 5))
    spec = charts.event_rate(frame).to_dict()
    rows = top_level_data(spec)
    assert sum(r["events"] for r in rows) == 600
    assert {r["event"] for r in rows} == {"MoneyDeposited", "MoneyWithdrawn"}
    assert spec["title"] == "Event rate (events per 10 s)"


@pytest.mark.parametrize("bucket", ["0s", "-1D", "1ns"])
def test_event_rate_with_a_bucket_that_is_not_a_positive_duration_fails_naming_it(bucket):
    frame = frames.events_frame(synthetic_events(60, 5))
    with pytest.raises(ValueError, match=f"event_rate bucket '{bucket}'.*positive duration"):
        charts.event_rate(frame, bucket=bucket)


def test_event_rate_with_a_given_bucket_uses_it():
    frame = frames.events_frame(synthetic_events(600, 5))
    spec = charts.event_rate(frame, bucket="1min", by_type=False).to_dict()
    assert [r["events"] for r in top_level_data(spec)] == [60] * 10
    assert "color" not in spec["encoding"]


def test_projection_lag_draws_one_line_per_projection():
    spec = charts.projection_lag(lag_samples(10)).to_dict()
    assert spec["mark"]["type"] == "line"
    assert spec["encoding"]["color"]["field"] == "projection"
    assert {r["projection"] for r in top_level_data(spec)} == {"balances", "statements"}


def test_lag_sample_lag_defaults_to_head_minus_checkpoint():
    at = datetime.now(UTC)
    assert LagSample("p", at, 7, 10).lag == 3
    assert LagSample("p", at, 7, 10, lag=1).lag == 1


def test_projection_lag_keeps_the_highest_lag_per_bucket_above_5000_samples():
    samples = lag_samples(3000, seconds=0.5)  # 6,000 samples
    spec = charts.projection_lag(samples).to_dict()
    rows = top_level_data(spec)
    assert len(rows) <= charts.MAX_ROWS
    assert max(r["lag"] for r in rows) == max(s.lag for s in samples)


def test_snapshot_positions_marks_each_snapshot_version_on_the_stream(bank_store):
    stream = frames.stream_frame(bank_store, "acc-1", EVENT_TYPES)
    snapshots = frames.snapshots_frame(bank_store.list_snapshots("acc-1"))
    spec = charts.snapshot_positions(stream, snapshots).to_dict()
    ticks, triangles, _labels = spec["layer"]
    assert ticks["mark"]["type"] == "tick"
    assert triangles["mark"]["shape"] == "triangle-down"
    marked = [r["version"] for r in spec["datasets"][triangles["data"]["name"]]]
    assert marked == snapshots["version"].tolist()
    assert marked == list(range(4, len(stream) + 1, 4))


def test_a_chart_of_a_frame_without_the_needed_columns_names_them():
    with pytest.raises(ValueError, match=r"lacks \['event_type'\]"):
        charts.event_rate(pd.DataFrame({"timestamp": []}))


def test_save_chart_writes_svg_for_an_svg_path(tmp_path):
    path = charts.save_chart(charts.projection_lag(lag_samples(5)), tmp_path / "lag.svg")
    assert path.read_text().lstrip().startswith("<svg")


# -- rendered PNGs -------------------------------------------------------------------------------
def _render(name: str, chart: alt.TopLevelMixin, tmp_path: Path) -> bytes:
    path = charts.save_chart(chart, tmp_path / f"{name}.png")
    if os.environ.get("ES_UPDATE_DOC_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / path.name)
    return path.read_bytes()


@pytest.mark.parametrize(
    "name", ["event-timeline", "event-rate", "projection-lag", "snapshot-positions"]
)
def test_each_chart_type_renders_offline_to_a_png(name, bank_store, tmp_path):
    events = frames.events_frame(bank_store.read_all(), EVENT_TYPES)
    chart = {
        "event-timeline": lambda: charts.event_timeline(events),
        "event-rate": lambda: charts.event_rate(events),
        "projection-lag": lambda: charts.projection_lag(lag_samples(60)),
        "snapshot-positions": lambda: charts.snapshot_positions(
            frames.stream_frame(bank_store, "acc-1", EVENT_TYPES),
            frames.snapshots_frame(bank_store.list_snapshots("acc-1")),
        ),
    }[name]()
    png = _render(name, chart, tmp_path)
    assert png.startswith(PNG_SIGNATURE)
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert width >= 1000  # 640 px wide at scale 2, plus axes and legend
    assert height >= 150


# -- readability ---------------------------------------------------------------------------------
def _one_transaction_frame() -> pd.DataFrame:
    with SQLiteEventStore(":memory:") as store:
        repo = account_repository(store)
        a = Account("acc-1")
        a.open("Ada", 100)
        a.deposit(50)
        repo.save(a)  # two events, one transaction, one timestamp
        b = Account("acc-2")
        b.open("Bob", 10)
        repo.save(b)
        return frames.store_events_frame(store, types=EVENT_TYPES)


def test_event_timeline_stacks_events_that_share_a_timestamp_so_each_is_seen():
    frame = _one_transaction_frame()
    spec = charts.event_timeline(frame).to_dict()
    rows = top_level_data(spec)
    acc1 = [r for r in rows if r["aggregate_id"] == "acc-1"]
    assert len(acc1) == 2 and acc1[0]["timestamp_s"] == acc1[1]["timestamp_s"]
    assert acc1[0]["offset"] != acc1[1]["offset"]
    assert abs(acc1[0]["offset"] - acc1[1]["offset"]) >= 7
    assert spec["encoding"]["yOffset"] == {"field": "offset", "type": "quantitative", "scale": None}


def test_event_rate_x_axis_starts_at_the_first_bucket_not_before_it():
    burst = frames.events_frame(synthetic_events(50, 5)[:4])  # 36 s: drawn in seconds
    scale = charts.event_rate(burst, bucket="10s").to_dict()["encoding"]["x"]["scale"]
    assert (scale["domain"][0], scale["nice"]) == (0, False)
    longer = frames.events_frame(synthetic_events(50, 5))  # 10 min: drawn on a time scale
    scale = charts.event_rate(longer, bucket="1min").to_dict()["encoding"]["x"]["scale"]
    assert scale["domain"][0] == 1_789_999_980_000  # the first bucket's start, in ms
    assert scale["nice"] is False


def test_weekly_event_rate_buckets_start_on_mondays_and_say_week():
    start = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                [start + timedelta(days=d) for d in range(0, 40, 3)], utc=True
            ),
            "event_type": "x.v1.Thing",
        }
    )
    spec = charts.event_rate(frame, bucket="7D").to_dict()
    starts = {pd.Timestamp(r["bucket"]).day_name() for r in top_level_data(spec)}
    assert starts == {"Monday"}
    assert spec["title"] == "Event rate (events per week)"
    assert spec["encoding"]["x"]["title"] == "week starting (UTC)"
    ticks = spec["encoding"]["x"]["axis"]["values"]
    assert all(pd.Timestamp(t, unit="ms").day_name() == "Monday" for t in ticks)


def test_bucket_labels_read_as_people_say_them():
    assert charts.bucket_label(7 * 86_400_000_000) == "week"
    assert charts.bucket_label(6 * 3_600_000_000) == "6 hours"
    assert charts.bucket_label(10_000) == "10 ms"
