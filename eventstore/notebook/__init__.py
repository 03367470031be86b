"""The Jupyter layer: ``%load_ext eventstore.notebook``.

This is the only package that imports IPython, ipywidgets, pandas and altair
(the ``notebook`` extra); ``import eventstore`` never imports it. Submodules:
``session`` (the store the magics and widgets share), ``frames`` (DataFrames),
``charts`` (altair), ``widgets`` (forms, event log, time travel, projection
monitor), ``magics``, and ``kernel`` (the "Event Sourcing (Python)" kernel spec).
"""

from __future__ import annotations

from typing import Any

from .session import NotebookSession, current_session, session_for

__all__ = [
    "NotebookSession",
    "current_session",
    "load_ipython_extension",
    "session_for",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and make the session (``%load_ext eventstore.notebook``).

    It also makes altair charts live widgets that draw offline (vega-embed from
    vl-convert, no CDN), each with a static PNG beside it for readers without a
    kernel (see ``widgets.chart_view``).
    """
    from .magics import EventStoreMagics
    from .widgets.chart_view import use_interactive_renderer

    use_interactive_renderer()
    ipython.register_magics(EventStoreMagics)
    session = session_for(ipython)
    ipython.push({"es_session": session}, interactive=False)
    _listen_to_datasets(session)


def _listen_to_datasets(session: NotebookSession) -> None:
    """Register the classes of every dataset loaded in this kernel with its session.

    ``eventstore.datasets`` knows nothing of IPython; it calls its load listeners,
    and this one makes ``%es_events`` decode the dataset's payloads with no
    ``es_session.register(...)`` line in the notebook.
    """
    from google.protobuf.message import Message

    from .. import datasets

    def register_dataset(loaded: datasets.LoadedDataset) -> None:
        public = (v for k, v in vars(loaded.module).items() if not k.startswith("_"))
        session.register(*(v for v in public if isinstance(v, type) and issubclass(v, Message)))

    datasets.add_load_listener(register_dataset)
    session.own("dataset listener", lambda: datasets.remove_load_listener(register_dataset))


def unload_ipython_extension(ipython: Any) -> None:
    """Close the session's store (``%unload_ext``); ``%load_ext`` again starts a new session."""
    session: NotebookSession | None = getattr(ipython, "_eventstore_session", None)
    if session is not None:
        session.close()
        delattr(ipython, "_eventstore_session")
