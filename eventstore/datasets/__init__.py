"""Small sample event logs to explore and teach with: ``eventstore.datasets.load("bank")``.

Each dataset ships inside the package (``eventstore/datasets/data/<name>/``):
its proto source, its events as JSON lines and a manifest. ``load`` generates
the module from the proto and appends the events to a store, so the data is
there to query, project and chart in one call:

    store, bank, summary = eventstore.datasets.load("bank")

The format, and the script that made the files, are described in
datasets/README.md at the root of the repository.
"""

from .loader import (
    FORMAT_VERSION,
    DatasetError,
    DatasetInfo,
    DatasetSummary,
    LoadedDataset,
    LoadListener,
    add_load_listener,
    available,
    info,
    load,
    proto_source,
    records,
    remove_load_listener,
)

__all__ = [
    "FORMAT_VERSION",
    "DatasetError",
    "DatasetInfo",
    "DatasetSummary",
    "LoadListener",
    "LoadedDataset",
    "add_load_listener",
    "available",
    "info",
    "load",
    "proto_source",
    "records",
    "remove_load_listener",
]
