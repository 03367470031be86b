"""altair charts of the log: timeline, event rate, projection lag, snapshots on a stream.

Each function takes a DataFrame from :mod:`eventstore.notebook.frames` (or lag
samples) and returns a chart that works offline: :func:`save_chart` renders it
to PNG or SVG with vl-convert, and :func:`use_offline_renderer` makes notebooks
show charts as images rendered in the kernel, so no CDN is needed and the
output is the same on every run.

altair refuses to embed more than 5,000 rows (``MaxRowsError``); every chart
here takes ``max_rows`` (that limit by default) and counts per time or version
bucket, in buckets as large as it takes, so that it never hands altair more
rows than that; its subtitle says how it counted.
Times are drawn on a UTC scale, as they are stored.

The charts are interactive where a kernel draws them (see
:mod:`eventstore.notebook.widgets.chart_view`): tooltips show each event's
type, version, time and payload, the timelines zoom and pan along x, and
clicks select (the ``event`` selection on the timelines, ``projection`` on
the lag chart) so a widget can follow what the reader points at.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

MAX_ROWS = 5000
"""altair's default row limit; charts aggregate before reaching it."""

WIDTH = 640

_BUCKETS: tuple[tuple[str, int, str], ...] = (
    # (pandas frequency, microseconds, label)
    ("1ms", 1_000, "1 ms"),
    ("10ms", 10_000, "10 ms"),
    ("100ms", 100_000, "100 ms"),
    ("1s", 1_000_000, "second"),
    ("10s", 10_000_000, "10 s"),
    ("1min", 60_000_000, "minute"),
    ("10min", 600_000_000, "10 min"),
    ("1h", 3_600_000_000, "hour"),
    ("1D", 86_400_000_000, "day"),
)


@dataclass(frozen=True, slots=True)
class LagSample:
    """One reading of a projection's progress: its checkpoint against the log's head.

    ``lag`` is how many positions it is behind; when not given it is ``head -
    checkpoint`` (a runner that skips other event types may report less).
    """

    projection: str
    at: datetime
    checkpoint: int
    head: int
    lag: int = -1

    def __post_init__(self) -> None:
        if self.lag < 0:
            object.__setattr__(self, "lag", max(self.head - self.checkpoint, 0))


EVENT_SELECTION = "event"
"""The name of the click selection on the timelines (fields: aggregate_id, version)."""
PROJECTION_SELECTION = "projection"
"""The name of the click selection on the lag chart (field: projection)."""
ZOOM = "zoom"
"""The name of the x-axis zoom (an interval bound to the scales: wheel and drag)."""


# -- helpers ---------------------------------------------------------------------------
def _payload_text(payload: Any, limit: int = 120) -> str:
    """A payload as one line for a tooltip: ``field=value, ...`` (hex when not decoded)."""
    if isinstance(payload, dict):
        text = ", ".join(f"{k}={v!r}" for k, v in payload.items())
    else:
        text = str(payload)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_tooltip_columns(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with ``time`` (text, UTC, to the ms) and ``payload_text`` for tooltips."""
    extra: dict[str, Any] = {}
    if "timestamp" in data.columns:
        extra["time"] = data["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3] + " UTC"
    if "payload" in data.columns:
        extra["payload_text"] = data["payload"].map(_payload_text).astype("str")
    return data.assign(**extra)


def _event_selection(*fields: str) -> Any:
    return alt.selection_point(name=EVENT_SELECTION, fields=list(fields), on="click", empty=False)


def _zoom() -> Any:
    return alt.selection_interval(name=ZOOM, bind="scales", encodings=["x"])


def _short_type(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


def _time_x(
    data: pd.DataFrame,
    field: str,
    title: str = "time (UTC)",
    *,
    end: str | None = None,
    tick_every: int | None = None,
) -> tuple[pd.DataFrame, alt.X]:
    """The x encoding of a time column, and the data it needs.

    Spans under a minute (a notebook cell's burst of commands) read better as
    seconds since the first event than as clock times differing in the
    milliseconds; longer spans use a UTC time scale. With ``end`` (the column
    where each bar ends) the scale runs exactly from the first start to the
    last end: no padding to negative seconds or to a "nice" date before the data.
    ``tick_every`` (microseconds) puts the ticks on the bucket edges when there
    are few enough of them, so a label sits under the start of each bar.
    """
    times = data[field] if end is None else pd.concat([data[field], data[end]])
    span = _span(times)
    if span < 60_000_000 and len(data):
        start = data[field].min()
        data = data.assign(**{f"{field}_s": (data[field] - start).dt.total_seconds()})
        scale: Any = alt.Undefined
        if end is not None:
            data = data.assign(**{f"{end}_s": (data[end] - start).dt.total_seconds()})
            scale = alt.Scale(domain=[0, float(data[f"{end}_s"].max())], nice=False, zero=True)
        return data, alt.X(
            f"{field}_s:Q",
            title=f"seconds since {start:%Y-%m-%d %H:%M:%S} UTC",
            scale=scale,
            axis=alt.Axis(labelAngle=0),
        )
    fmt = "%H:%M:%S" if span < 86_400_000_000 else "%Y-%m-%d %H:%M"
    axis: dict[str, Any] = {"format": fmt, "labelAngle": 0, "labelOverlap": "greedy"}
    scale = alt.Scale(type="utc")
    if end is not None and len(data):
        first = int(_micros(data[field]).min()) // 1000
        last = int(_micros(data[end]).max()) // 1000
        scale = alt.Scale(type="utc", domain=[first, last], nice=False)
        if tick_every is not None and tick_every % 86_400_000_000 == 0:
            edges = list(range(first, last + 1, tick_every // 1000))
            if len(edges) <= 16:
                axis.update(values=edges, format="%b %d")
    return data, alt.X(f"{field}:T", title=title, scale=scale, axis=alt.Axis(**axis))


def _span(series: pd.Series) -> int:
    if not len(series):
        return 0
    micros = _micros(series)
    return int(micros.max() - micros.min())


def _micros(series: pd.Series) -> np.ndarray:
    return np.asarray(series.dt.tz_convert("UTC").dt.as_unit("us").astype("int64"))


def choose_bucket(span_micros: int, max_buckets: int = 120) -> tuple[str, int, str]:
    """The smallest of the usual bucket sizes that splits ``span`` into at most ``max_buckets``."""
    for bucket in _BUCKETS:
        if span_micros // bucket[1] < max_buckets:
            return bucket
    return _BUCKETS[-1]


_DAY = 86_400_000_000
_MONDAY = 4 * _DAY  # 1970-01-01 was a Thursday; 1970-01-05 a Monday
_WEEK = 7 * _DAY


def _bucket_sizes(first: int) -> Iterator[int]:
    """``first``, then each larger bucket size: the usual ones, whole weeks, doubling years.

    Endless, so a caller coarsening until its rows fit always finds a size that does.
    """
    yield first
    usual = [b[1] for b in _BUCKETS] + [_WEEK, 4 * _WEEK, 13 * _WEEK, 52 * _WEEK]
    size = first
    for size in (s for s in usual if s > first):
        yield size
    size = max(size, 52 * _WEEK)
    while True:
        size *= 2
        yield size


def _fit_time_buckets(
    times: pd.Series,
    first: int,
    max_rows: int,
    reduce: Callable[[pd.Series], pd.DataFrame],
) -> tuple[pd.DataFrame, int]:
    """``reduce(times floored to a bucket)``, for the smallest bucket from ``first`` up whose
    result holds at most ``max_rows`` rows, and that bucket size (microseconds).

    A bucket longer than the span leaves at most two buckets (its edges need not fall on
    the first time): the caller keeps two buckets' rows within ``max_rows``.
    """
    span = _span(times)
    for size in _bucket_sizes(first):
        reduced = reduce(_floor_times(times, size))
        if len(reduced) <= max_rows or size > span:
            return reduced, size
    raise AssertionError("unreachable: _bucket_sizes never ends")  # pragma: no cover


def _version_buckets(versions: pd.Series, buckets: int) -> tuple[pd.Series, int]:
    """Each version's bucket (its first version) and the bucket size, so that the versions
    present fall in at most ``buckets`` buckets (counted from the lowest one)."""
    low, high = int(versions.min()), int(versions.max())
    step = max(1, -(-(high - low + 1) // max(1, buckets)))
    return (versions - low) // step * step + low, step


def _floor_times(series: pd.Series, bucket_micros: int) -> pd.Series:
    """Each time floored to its bucket; week-sized buckets start on Mondays (UTC)."""
    micros = _micros(series)
    anchor = _MONDAY if bucket_micros % (7 * _DAY) == 0 else 0
    floored = micros - (micros - anchor) % bucket_micros
    return pd.Series(pd.to_datetime(floored, unit="us", utc=True), index=series.index)


def bucket_label(bucket_micros: int) -> str:
    """A bucket size as people say it: "week", "day", "6 hours", "10 ms"."""
    named = {b[1]: b[2] for b in _BUCKETS}
    if bucket_micros in named:
        return named[bucket_micros]
    units = (
        (7 * _DAY, "week"),
        (_DAY, "day"),
        (3_600_000_000, "hour"),
        (60_000_000, "minute"),
        (1_000_000, "second"),
        (1_000, "ms"),
    )
    for size, unit in units:
        if bucket_micros % size == 0:
            count = bucket_micros // size
            if count == 1:
                return unit
            return f"{count} {unit}" if unit == "ms" else f"{count} {unit}s"
    return f"{bucket_micros} µs"


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], chart: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{chart} needs a frame with columns {list(columns)}; this one lacks {missing}. "
            "Build it with eventstore.notebook.frames (events_frame, stream_frame, ...)."
        )


# -- event timeline ---------------------------------------------------------------------
def event_timeline(
    events: pd.DataFrame, *, max_aggregates: int = 30, max_rows: int = MAX_ROWS
) -> alt.Chart:
    """Each event as a dot: time across, aggregate down, coloured by event type.

    Above ``max_aggregates`` aggregates, the busiest ones are shown. Above
    ``max_rows`` events, dots become counts per time bucket and event type
    (dot size), in buckets large enough that the chart holds at most
    ``max_rows`` rows; when even two buckets per aggregate and type would not
    fit, the types are counted together (and, past ``max_rows / 2``
    aggregates, only the busiest are shown). The subtitle says which.
    """
    _require_columns(events, ("timestamp", "aggregate_id", "event_type"), "event_timeline")
    data = events.assign(event=events["event_type"].map(_short_type))
    total_aggregates = data["aggregate_id"].nunique()
    if total_aggregates > max_aggregates:
        data = _busiest(data, max_aggregates)
    color = alt.Color("event:N", title="event type")
    if len(data) <= max_rows:
        subtitle = _busiest_subtitle(data, total_aggregates)
        title = alt.Title(
            f"Event timeline ({len(events):,} events)", subtitle=subtitle or alt.Undefined
        )
        order = list(dict.fromkeys(data["aggregate_id"]))
        y = alt.Y("aggregate_id:N", title="aggregate", sort=order)
        columns = [
            c
            for c in (
                "timestamp",
                "aggregate_id",
                "event",
                "event_type",
                "version",
                "position",
                "payload",
            )
            if c in data.columns
        ]
        points, x = _time_x(_with_tooltip_columns(data[columns]), "timestamp")
        points = points.drop(columns=["payload"], errors="ignore")
        points = points.assign(offset=_stack_offsets(points))
        selected = _event_selection(
            *(f for f in ("aggregate_id", "version") if f in points.columns)
        )
        return (
            alt.Chart(points, title=title, width=WIDTH, height=max(80, 22 * len(order)))
            .mark_circle(size=70, opacity=0.85)
            .encode(
                x=x,
                y=y,
                yOffset=alt.YOffset("offset:Q", scale=None),
                color=color,
                stroke=alt.condition(selected, alt.value("black"), alt.value(None)),
                tooltip=[
                    c
                    for c in ("event_type", "aggregate_id", "version", "position", "time")
                    if c in points.columns
                ]
                + (["payload_text"] if "payload_text" in points.columns else []),
            )
            .add_params(selected, _zoom())
        )
    # Counted per bucket: at least two buckets' rows must fit (a bucket's edges need not
    # fall on the first event), so past that the aggregates shown, then the types, give way.
    if data["aggregate_id"].nunique() > max(1, max_rows // 2):
        data = _busiest(data, max(1, max_rows // 2))
    subtitle = _busiest_subtitle(data, total_aggregates)
    types = data["event"].nunique()
    groups = len(data[["aggregate_id", "event"]].drop_duplicates())
    if 2 * groups > max_rows:
        data = data.assign(event=f"all {types} types")
        subtitle.append(
            f"the {types} event types counted together (each apart would take more than "
            f"{max_rows:,} rows)"
        )
        groups = data["aggregate_id"].nunique()
    order = list(dict.fromkeys(data["aggregate_id"]))
    # From the finest bucket (120 over the span): not every aggregate has every type in
    # every bucket, so _fit_time_buckets grows it only as far as the rows need.
    _, first, _ = choose_bucket(_span(data["timestamp"]))

    def count(buckets: pd.Series) -> pd.DataFrame:
        return (
            data.assign(bucket=buckets)
            .groupby(["bucket", "aggregate_id", "event"], observed=True)
            .size()
            .reset_index(name="events")
        )

    binned, bucket_micros = _fit_time_buckets(data["timestamp"], first, max_rows, count)
    label = bucket_label(bucket_micros)
    subtitle.append(f"events counted per {label}")
    title = alt.Title(f"Event timeline ({len(events):,} events)", subtitle=subtitle)
    binned, x = _time_x(binned, "bucket")
    return (
        alt.Chart(binned, title=title, width=WIDTH, height=max(80, 22 * len(order)))
        .mark_circle(opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("aggregate_id:N", title="aggregate", sort=order),
            color=color,
            size=alt.Size("events:Q", title=f"events per {label}"),
            tooltip=["aggregate_id", "event", "bucket", "events"],
        )
    )


def _busiest(data: pd.DataFrame, count: int) -> pd.DataFrame:
    """The events of the ``count`` aggregates with the most events."""
    busiest = data["aggregate_id"].value_counts().index[:count]
    return data[data["aggregate_id"].isin(busiest)]


def _busiest_subtitle(data: pd.DataFrame, total_aggregates: int) -> list[str]:
    shown = data["aggregate_id"].nunique()
    if shown < total_aggregates:
        return [f"the {shown} busiest of {total_aggregates:,} aggregates"]
    return []


_DOT_PIXELS = 9.0  # a dot of size 70 is about 9 px across


def _stack_offsets(points: pd.DataFrame) -> np.ndarray:
    """Pixel offsets that stack dots which would land on top of each other.

    Events of one aggregate stored in one transaction share a timestamp (and
    a burst of commands lands within a pixel): without this, only the last
    dot of such a group would be seen. Dots closer than a dot's width on the
    x axis form a group, spread evenly up and down around the row's middle.
    """
    offsets = np.zeros(len(points))
    if not len(points):
        return offsets
    micros = _micros(points["timestamp"]).astype("float64")
    span = max(float(micros.max() - micros.min()), 1.0)
    pixels = (micros - micros.min()) / span * WIDTH
    order = np.lexsort((micros, points["aggregate_id"].to_numpy()))
    band = 22.0
    group: list[int] = []

    def spread(members: list[int]) -> None:
        step = min(_DOT_PIXELS * 0.8, (band - 4) / max(len(members), 1))
        for slot, row in enumerate(members):
            offsets[row] = band / 2 + (slot - (len(members) - 1) / 2) * step

    aggregate_ids = points["aggregate_id"].to_numpy()
    for row in order:
        if group and (
            aggregate_ids[row] != aggregate_ids[group[0]]
            or pixels[row] - pixels[group[0]] >= _DOT_PIXELS
        ):
            spread(group)
            group = []
        group.append(int(row))
    spread(group)
    return offsets


# -- event rate --------------------------------------------------------------------------
def event_rate(
    events: pd.DataFrame,
    *,
    bucket: str | None = None,
    by_type: bool = True,
    max_rows: int = MAX_ROWS,
) -> alt.Chart:
    """Events per time bucket as stacked bars (by event type), bucket chosen from the span.

    The chart holds at most ``max_rows`` rows (bars by type). When the bars by
    type would take more, the types are counted together if that is enough;
    otherwise the bucket grows (also a given ``bucket``) until the bars fit. The
    subtitle says which.
    """
    _require_columns(events, ("timestamp", "event_type"), "event_rate")
    if bucket is None:
        _, bucket_micros, _ = choose_bucket(_span(events["timestamp"]))
    else:
        bucket_micros = _bucket_micros(bucket)
    subtitle: list[str] = []
    data = events.assign(event=events["event_type"].map(_short_type))

    def count(keys: list[str]) -> Callable[[pd.Series], pd.DataFrame]:
        def counted(buckets: pd.Series) -> pd.DataFrame:
            return (
                data.assign(bucket=buckets)
                .groupby(["bucket", *keys], observed=True)
                .size()
                .reset_index(name="events")
            )

        return counted

    if by_type:
        # Types together keep the bucket when that is enough; when the bucket must grow
        # anyway, the types stay apart as long as two buckets of them fit.
        floored = _floor_times(data["timestamp"], bucket_micros)
        types = data["event"].nunique()
        if len(count(["event"])(floored)) > max_rows and (
            len(count([])(floored)) <= max_rows or 2 * types > max_rows
        ):
            by_type = False
            subtitle.append(
                f"the {types} event types counted together (apart they would take more "
                f"than {max_rows:,} rows)"
            )
    keys = ["event"] if by_type else []
    counted, size = _fit_time_buckets(data["timestamp"], bucket_micros, max_rows, count(keys))
    label = bucket_label(size)
    if size != bucket_micros:
        subtitle.append(
            f"counted per {label}: per {bucket_label(bucket_micros)} there would be more than "
            f"{max_rows:,} bars"
        )
    counted["bucket_end"] = counted["bucket"] + pd.Timedelta(microseconds=size)
    x_title = f"{label} starting (UTC)" if size >= _DAY else "time (UTC)"
    counted, x = _time_x(counted, "bucket", x_title, end="bucket_end", tick_every=size)
    x2 = alt.X2("bucket_end_s") if "bucket_s" in counted else alt.X2("bucket_end")
    encoding: dict[str, Any] = {
        "x": x,
        "x2": x2,
        "y": alt.Y("events:Q", title=f"events per {label}", stack="zero"),
        "tooltip": ["bucket", *keys, "events"],
    }
    if by_type:
        encoding["color"] = alt.Color("event:N", title="event type")
    title: Any = f"Event rate (events per {label})"
    if subtitle:
        title = alt.Title(title, subtitle=subtitle)
    return (
        alt.Chart(counted, title=title, width=WIDTH, height=220)
        .mark_bar(orient="vertical", stroke="white", strokeWidth=0.5)
        .encode(**encoding)
    )


def _bucket_micros(bucket: str) -> int:
    """``event_rate``'s bucket in microseconds; ValueError unless a positive duration.

    pandas reads "0s" and "-1D" as durations too: unchecked, they would divide by
    zero or count backwards and draw "events per 0 weeks".
    """
    fix = 'the bucket must be a positive duration of at least 1 µs, like "1min", "6h" or "7D"'
    try:
        micros = pd.Timedelta(bucket) // pd.Timedelta(microseconds=1)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"event_rate bucket {bucket!r}: {str(exc).rstrip('.')}; {fix}") from None
    if micros < 1:
        raise ValueError(f"event_rate bucket {bucket!r}: {fix}")
    return int(micros)


# -- projection lag ----------------------------------------------------------------------
def lag_frame(samples: Sequence[LagSample]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "projection": pd.Series([s.projection for s in samples], dtype="str"),
            "at": pd.DatetimeIndex(pd.to_datetime([s.at for s in samples], utc=True)).as_unit("us"),
            "checkpoint": np.asarray([s.checkpoint for s in samples], dtype="int64"),
            "head": np.asarray([s.head for s in samples], dtype="int64"),
            "lag": np.asarray([s.lag for s in samples], dtype="int64"),
        }
    )


def projection_lag(
    samples: Sequence[LagSample] | pd.DataFrame, *, max_rows: int = MAX_ROWS
) -> alt.Chart:
    """Events each projection is behind the head, over time.

    Above ``max_rows`` samples, each projection's highest lag per time bucket,
    in buckets large enough that the chart holds at most ``max_rows`` rows
    (past ``max_rows / 2`` projections, those that fell furthest behind).
    """
    data = samples if isinstance(samples, pd.DataFrame) else lag_frame(samples)
    _require_columns(data, ("projection", "at", "lag"), "projection_lag")
    subtitle: Any = alt.Undefined
    if len(data) > max_rows:
        lines: list[str] = []
        total = data["projection"].nunique()
        if total > max(1, max_rows // 2):
            worst = data.groupby("projection", observed=True)["lag"].max()
            keep = worst.sort_values(ascending=False, kind="stable").index[: max(1, max_rows // 2)]
            data = data[data["projection"].isin(keep)]
            lines.append(f"the {len(keep)} furthest behind of {total:,} projections")
        projections = data["projection"].nunique()
        wanted = max(1, min(max_rows // 10, max_rows // max(projections, 1)))
        _, first, _ = choose_bucket(_span(data["at"]), max_buckets=wanted)

        def highest(buckets: pd.Series) -> pd.DataFrame:
            return (
                data.assign(at=buckets)
                .groupby(["projection", "at"], observed=True)["lag"]
                .max()
                .reset_index()
            )

        data, bucket_micros = _fit_time_buckets(data["at"], first, max_rows, highest)
        lines.append(f"highest lag per {bucket_label(bucket_micros)}")
        subtitle = lines if len(lines) > 1 else lines[0]
    data, x = _time_x(data[["projection", "at", "lag"]], "at")
    # Click a line, a point or the legend: a widget shows that projection's status.
    selected = alt.selection_point(
        name=PROJECTION_SELECTION, fields=["projection"], on="click", bind="legend"
    )
    return (
        alt.Chart(
            data,
            title=alt.Title("Projection lag (events behind the head)", subtitle=subtitle),
            width=WIDTH,
            height=220,
        )
        .mark_line(point=len(data) <= 200, interpolate="step-after")
        .encode(
            x=x,
            y=alt.Y("lag:Q", title="events behind"),
            color=alt.Color("projection:N", title="projection"),
            opacity=alt.condition(selected, alt.value(1.0), alt.value(0.35)),
            tooltip=["projection", "at", "lag"],
        )
        .add_params(selected)
    )


# -- one aggregate's events by version ------------------------------------------------------
def version_timeline(stream: pd.DataFrame, *, max_rows: int = MAX_ROWS) -> alt.Chart:
    """One aggregate's events as dots by version (across) and event type (down).

    Tooltips give each event's type, version, time and payload; a click selects
    an event (the ``event`` selection, by version), which
    :meth:`TimeTravel.timeline <eventstore.notebook.widgets.TimeTravel.timeline>`
    follows; the wheel zooms and a drag pans along the versions. Above
    ``max_rows`` events (altair refuses more than 5,000 rows), dots become counts
    per bucket of versions (dot size); a click selects the bucket's first version.
    """
    _require_columns(stream, ("version", "event_type", "timestamp"), "version_timeline")
    name = str(stream["aggregate_id"].iloc[0]) if "aggregate_id" in stream and len(stream) else ""
    selected = _event_selection("version")
    last = int(stream["version"].max()) if len(stream) else 1
    x = alt.X(
        "version:Q",
        title="version",
        scale=alt.Scale(domain=[0.5, last + 0.5], nice=False, zero=False),
        axis=alt.Axis(format="d", tickMinStep=1, labelAngle=0),
    )
    subtitle = "click an event to travel to its version; wheel to zoom"
    size: Any = alt.condition(selected, alt.value(260), alt.value(90))
    if len(stream) <= max_rows:
        columns = [
            c
            for c in ("aggregate_id", "version", "event_type", "timestamp", "payload")
            if c in stream.columns
        ]
        data = _with_tooltip_columns(stream[columns]).drop(
            columns=["timestamp", "payload"], errors="ignore"
        )
        tooltip = ["event_type", "version", "time", "payload_text"]
    else:
        # At most max_rows / 10 buckets (fewer with more than 10 event types): one row
        # per bucket and type stays within max_rows. With more types than that, the
        # types are counted together.
        counted = stream
        types = stream["event_type"].nunique()
        together = ""
        if types > max_rows // 10:
            counted = stream.assign(event_type=f"all {types} types")
            together = f"the {types} event types counted together; "
        buckets = max(1, max_rows // max(10, counted["event_type"].nunique()))
        first, step = _version_buckets(counted["version"], buckets)
        data = (
            counted.assign(version=first)
            .groupby(["version", "event_type"], observed=True)
            .size()
            .reset_index(name="events")
        )
        data["last_version"] = np.minimum(data["version"] + step - 1, last)
        subtitle = (
            f"{together}events counted per {step} versions; click a dot to travel to its "
            "first version; wheel to zoom"
        )
        size = alt.Size("events:Q", title=f"events per {step} versions")
        tooltip = ["event_type", "version", "last_version", "events"]
    data = data.assign(event=data["event_type"].map(_short_type))
    types = list(dict.fromkeys(data["event"]))
    return (
        alt.Chart(
            data,
            title=alt.Title(f"Stream {name!r}: {len(stream):,} events", subtitle=subtitle),
            width=WIDTH,
            height=max(60, 26 * len(types)),
        )
        .mark_point(size=90, filled=True, opacity=0.9)
        .encode(
            x=x,
            y=alt.Y("event:N", title="event type", sort=types),
            color=alt.Color("event:N", title="event type", legend=None),
            size=size,
            stroke=alt.condition(selected, alt.value("black"), alt.value(None)),
            tooltip=tooltip,
        )
        .add_params(selected, _zoom())
    )


# -- snapshots on a stream ---------------------------------------------------------------
def snapshot_positions(
    stream: pd.DataFrame, snapshots: pd.DataFrame, *, max_rows: int = MAX_ROWS
) -> alt.LayerChart:
    """An aggregate's events by version, with a marker at each version that has a snapshot.

    The chart holds at most ``max_rows`` rows: above ``max_rows / 10``
    snapshots, a marker stands for the snapshots in a bucket of versions (its
    tooltip counts them); the events take the rows left, counted per bucket of
    versions and event type when they do not fit (the types together when
    there are too many). The subtitle says which.
    """
    _require_columns(stream, ("version", "event_type"), "snapshot_positions")
    _require_columns(snapshots, ("version",), "snapshot_positions")
    events = stream.assign(event=stream["event_type"].map(_short_type))[["version", "event"]]
    name = str(stream["aggregate_id"].iloc[0]) if "aggregate_id" in stream and len(stream) else ""
    versions = sorted(int(v) for v in snapshots["version"])
    shown = ", ".join(str(v) for v in versions[:12]) + (" ..." if len(versions) > 12 else "")
    subtitle = [f"snapshots at versions {shown}" if versions else "no snapshots"]
    x_scale = alt.Scale(domain=[0, max(int(events["version"].max()) if len(events) else 1, 1) + 1])
    marks = pd.DataFrame({"version": np.asarray(versions, dtype="int64"), "label": "snapshot"})
    max_marks = max(1, max_rows // 10)
    counted_marks = len(marks) > max_marks
    if counted_marks:
        first, step = _version_buckets(marks["version"], max_marks)
        marks = (
            marks.assign(first=first)
            .groupby("first")["version"]
            .agg(["min", "max", "size"])
            .reset_index(drop=True)
            .rename(columns={"min": "version", "max": "last_version", "size": "snapshots"})
            .assign(label="snapshots")
        )
        subtitle.append(f"snapshots counted per {step} versions")
    budget = max(1, max_rows - len(marks))
    if len(events) > budget:
        types = events["event"].nunique()
        if types > budget // 10:
            events = events.assign(event=f"all {types} types")
            subtitle.append(f"the {types} event types counted together")
        buckets = max(1, budget // max(10, events["event"].nunique()))
        first, step = _version_buckets(events["version"], buckets)
        events = (
            events.assign(version=first)
            .groupby(["version", "event"], observed=True)
            .size()
            .reset_index(name="events")
        )
        subtitle.append(f"events counted per {step} versions")
    title = alt.Title(
        f"Stream {name!r}: {len(stream):,} events, {len(versions)} "
        + ("snapshot" if len(versions) == 1 else "snapshots"),
        subtitle=subtitle if len(subtitle) > 1 else subtitle[0],
    )
    ticks = (
        alt.Chart(events)
        .mark_tick(thickness=2, size=26)
        .encode(
            x=alt.X(
                "version:Q",
                title="version",
                scale=x_scale,
                axis=alt.Axis(format="d", tickMinStep=1, labelAngle=0),
            ),
            color=alt.Color("event:N", title="event type"),
            tooltip=list(events.columns),
        )
    )
    base = alt.Chart(marks).encode(x=alt.X("version:Q", scale=x_scale))
    triangles = base.mark_point(
        shape="triangle-down", size=160, filled=True, color="#222", yOffset=-22
    ).encode(tooltip=["label", *(c for c in marks.columns if c != "label")])
    labels = base.mark_text(dy=-38, fontSize=11, color="#222").encode(text="version:Q")
    layered = alt.layer(ticks, triangles, labels, title=title)
    return layered.properties(width=WIDTH, height=90)  # type: ignore[return-value]


# -- rendering ----------------------------------------------------------------------------
def chart_png(chart: alt.TopLevelMixin, *, scale: float = 2.0) -> bytes:
    """The chart as PNG bytes, rendered in-process by vl-convert (no browser, no network)."""
    import vl_convert

    return bytes(vl_convert.vegalite_to_png(chart.to_json(), scale=scale))


def chart_svg(chart: alt.TopLevelMixin) -> str:
    import vl_convert

    return str(vl_convert.vegalite_to_svg(chart.to_json()))


def save_chart(
    chart: alt.TopLevelMixin, path: str | os.PathLike[str], *, scale: float = 2.0
) -> Path:
    """Write the chart as ``.png`` or ``.svg`` (by the path's suffix)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".png":
        target.write_bytes(chart_png(chart, scale=scale))
    elif suffix == ".svg":
        target.write_text(chart_svg(chart), encoding="utf-8")
    else:
        raise ValueError(f"cannot save chart as {target.name!r}: the suffix must be .png or .svg")
    return target


def use_offline_renderer(kind: str = "svg") -> None:
    """Show charts as SVG or PNG rendered in the kernel: no CDN, same output every run."""
    if kind not in ("svg", "png"):
        raise ValueError(f"offline renderer must be 'svg' or 'png', got {kind!r}")
    alt.renderers.enable(kind)
