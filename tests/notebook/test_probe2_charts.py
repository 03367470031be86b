"""Every chart keeps within max_rows rows, whatever the shape of the data above 5,000 rows.

altair raises MaxRowsError when one chart's data crosses 5,000 rows. Each case here
gives a chart more than 5,000 rows in a shape that used to slip past its bucketing
(many aggregates and types, many types, many snapshots, a long span, many
projections, a fine bucket), and checks the spec altair would embed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from eventstore import Event
from eventstore.notebook import charts, frames
from eventstore.notebook.charts import LagSample

START = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC, in microseconds


def events(
    count: int,
    *,
    aggregates: int = 1,
    types: int = 3,
    every_micros: int = 1_000_000,
) -> pd.DataFrame:
    """An events frame: ``count`` events round-robin over aggregates, then types."""
    return frames.events_frame(
        [
            Event(
                f"e{i}",
                f"agg-{i % aggregates}",
                "Book",
                f"library.v1.Type{(i // aggregates) % types}Event",
                i // aggregates + 1,
                i + 1,
                START + i * every_micros,
                b"",
            )
            for i in range(count)
        ]
    )


def rows_by_dataset(spec: dict) -> list[int]:
    """How many rows each dataset of a chart's spec holds (what altair counted)."""
    return [len(values) for values in spec.get("datasets", {}).values()]


def subtitle(spec: dict) -> str:
    lines = spec["title"]["subtitle"]
    return " | ".join(lines) if isinstance(lines, list) else lines


# -- event_timeline -----------------------------------------------------------------------------
def test_event_timeline_of_30_aggregates_and_3_types_over_2_hours_stays_within_max_rows():
    frame = events(6000, aggregates=30, types=3, every_micros=1_200_000)
    spec = charts.event_timeline(frame).to_dict()  # MaxRowsError before the fix
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000
    assert "events counted per 10 min" in subtitle(spec)


def test_event_timeline_counts_types_together_when_two_buckets_of_each_would_not_fit():
    frame = events(6000, aggregates=1500, types=4, every_micros=1_000)
    spec = charts.event_timeline(frame, max_aggregates=1500).to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000
    assert {r["event"] for r in rows} == {"all 4 types"}
    assert "the 4 event types counted together" in subtitle(spec)


def test_event_timeline_with_more_aggregates_than_half_max_rows_keeps_the_busiest():
    frame = events(6000, aggregates=3000, types=1, every_micros=1_000)
    spec = charts.event_timeline(frame, max_aggregates=3000).to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert len({r["aggregate_id"] for r in rows}) == 2500
    assert "the 2500 busiest of 3,000 aggregates" in subtitle(spec)


def test_event_timeline_over_years_counts_in_buckets_longer_than_a_day():
    frame = events(6000, aggregates=30, types=3, every_micros=86_400_000_000)  # 16 years
    spec = charts.event_timeline(frame).to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000


def test_event_timeline_takes_a_smaller_max_rows():
    frame = events(900, aggregates=30, types=3, every_micros=1_200_000)
    spec = charts.event_timeline(frame, max_rows=300).to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= 300
    assert sum(r["events"] for r in rows) == 900


# -- event_rate ---------------------------------------------------------------------------------
def test_event_rate_over_more_days_than_max_rows_counts_per_longer_buckets():
    frame = events(6000, types=2, every_micros=86_400_000_000)  # one event a day, 16 years
    spec = charts.event_rate(frame).to_dict()  # MaxRowsError before the fix
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000
    assert "per day there would be more than 5,000 bars" in subtitle(spec)


def test_event_rate_with_a_bucket_too_fine_for_max_rows_grows_it_and_says_so():
    frame = events(6000, types=2, every_micros=100_000)  # ten minutes
    spec = charts.event_rate(frame, bucket="1ms").to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000
    assert {r["event"] for r in rows} == {"Type0Event", "Type1Event"}  # types kept apart
    assert "counted per second: per 1 ms there would be more than 5,000 bars" in subtitle(spec)


# -- projection_lag -----------------------------------------------------------------------------
def test_projection_lag_of_100_projections_stays_within_max_rows():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    samples = [
        LagSample(f"p{p}", at + timedelta(minutes=m), 0, 10 + m, 10 + m)
        for m in range(60)
        for p in range(100)
    ]
    spec = charts.projection_lag(samples).to_dict()  # MaxRowsError before the fix
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert len({r["projection"] for r in rows}) == 100
    assert max(r["lag"] for r in rows) == 69


# -- version_timeline ---------------------------------------------------------------------------
def test_version_timeline_of_more_types_than_fit_counts_them_together():
    frame = events(6000, types=6000)  # every event a type of its own
    spec = charts.version_timeline(frame).to_dict()  # MaxRowsError before the fix
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6000
    assert "the 6000 event types counted together" in subtitle(spec)


# -- snapshot_positions -------------------------------------------------------------------------
def test_snapshot_positions_with_a_snapshot_at_every_one_of_6000_versions_stays_within_max_rows():
    stream = events(6000, types=1)
    snapshots = pd.DataFrame({"version": range(1, 6001)})
    spec = charts.snapshot_positions(stream, snapshots).to_dict()  # MaxRowsError before
    assert sum(rows_by_dataset(spec)) <= charts.MAX_ROWS
    _ticks, triangles, _labels = spec["layer"]
    marks = spec["datasets"][triangles["data"]["name"]]
    assert sum(m["snapshots"] for m in marks) == 6000
    assert "snapshots counted per 12 versions" in subtitle(spec)


def test_snapshot_positions_of_6000_events_of_20_types_stays_within_max_rows():
    stream = events(6000, types=20)
    spec = charts.snapshot_positions(stream, pd.DataFrame({"version": [100, 200]})).to_dict()
    assert sum(rows_by_dataset(spec)) <= charts.MAX_ROWS  # MaxRowsError before the fix
    ticks, triangles, _labels = spec["layer"]
    assert sum(r["events"] for r in spec["datasets"][ticks["data"]["name"]]) == 6000
    assert [m["version"] for m in spec["datasets"][triangles["data"]["name"]]] == [100, 200]
    assert "events counted per" in subtitle(spec)


def test_snapshot_positions_with_more_snapshots_than_max_rows_and_few_events():
    stream = events(10, types=1)
    snapshots = pd.DataFrame({"version": range(1, 6001)})  # markers alone cross 5,000
    spec = charts.snapshot_positions(stream, snapshots).to_dict()
    assert all(rows <= charts.MAX_ROWS for rows in rows_by_dataset(spec))
    assert sum(rows_by_dataset(spec)) <= charts.MAX_ROWS


def test_a_counted_snapshot_positions_chart_renders_to_a_png():
    stream = events(6000, types=20)
    snapshots = pd.DataFrame({"version": range(1, 6001)})
    png = charts.chart_png(charts.snapshot_positions(stream, snapshots), scale=1)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_event_timeline_above_max_rows_takes_the_finest_bucket_whose_rows_fit():
    # Bursts: not every aggregate has every type in every bucket. The search began at the
    # worst case (every pair in every bucket) and drew hours where 10 minutes fit.
    rng = np.random.default_rng(1)
    start = pd.Timestamp("2024-03-04 08:00", tz="UTC")
    seconds = np.concatenate([h * 3600 + rng.uniform(0, 1200, 600) for h in range(10)])
    n = len(seconds)
    events = pd.DataFrame(
        {
            "aggregate_id": [f"acc-{i % 20}" for i in range(n)],
            "event_type": [f"a.v1.E{i % 7}Event" for i in range(n)],
            "version": range(1, n + 1),
            "timestamp": start + pd.to_timedelta(np.sort(seconds), unit="s"),
        }
    )
    chart = charts.event_timeline(events).to_dict()
    assert chart["title"]["subtitle"] == ["events counted per 10 min"]
    assert len(next(iter(chart["datasets"].values()))) <= 5000
