"""IPython magics: ``%%es_generate``, ``%es_store``, ``%es_events``, ``%es_state``.

Every magic reaches the store through the kernel's :class:`NotebookSession`.
A magic that cannot do its job raises :class:`MagicError`, an ordinary
exception, so the cell fails (in JupyterLab, nbclient and nbval alike; IPython's
``UsageError`` only prints, and nbval would let the cell pass). Its
``_render_traceback_`` shows the message without Python frames: the reader
made a mistake in a cell, not in our code.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import pandas as pd
from google.protobuf.message import Message
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.errors import (
    AggregateTypeMismatchError,
    EventDecodeError,
    EventStoreError,
    StoreClosedError,
    redact_url,
)
from ..core.repository import Repository
from . import frames
from .session import MEMORY, NoStoreError, NotebookSession, session_for
from .state import aggregate_state


class MagicError(Exception):
    """A magic could not do what the cell asked; the message says why and what to do."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


@magics_class
class EventStoreMagics(Magics):
    @property
    def session(self) -> NotebookSession:
        return session_for(self.shell)

    @property
    def user_ns(self) -> dict[str, Any]:
        assert self.shell is not None
        return self.shell.user_ns  # type: ignore[no-any-return]

    def _args(self, magic: Any, line: str, prefix: str = "%") -> Any:
        """The magic's arguments, split as a shell would: every magic parses its line here.

        IPython's ``parse_argstring`` splits with ``shlex`` in non-POSIX mode, which
        keeps the quotes in the values (``'m 1'`` stays ``"'m 1'"``), so an id or a
        path with a space could not be given at all. POSIX splitting removes them,
        and ``--`` ends the options (``%es_state --repo r -- -x``), as in a shell.
        """
        name = f"{prefix}{magic.__name__}"
        try:
            argv = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise MagicError(
                f"{name} {line.strip()}: {exc}. Close the quote (e.g. 'm 1'). "
                f"See {name}? for its usage."
            ) from None
        try:
            return magic.parser.parse_args(argv)
        except UsageError as exc:
            hint = ""
            if "unrecognized arguments" in str(exc):
                hint = " Quote a value that has spaces ('m 1')."
            raise MagicError(
                f"{name} {line.strip()}: {exc}.{hint} See {name}? for its usage."
            ) from None

    # -- %es_store ------------------------------------------------------------------------------
    @magic_arguments()
    @argument(
        "path",
        nargs="?",
        default=MEMORY,
        help=(
            "SQLite file to open (created when missing), :memory: (the default), or a "
            "store URL (sqlite:///bank.db, sqlite://, file:/data/bank.db?mode=ro)"
        ),
    )
    @argument("--var", default="store", help="variable to bind the store to (default: store)")
    @line_magic
    def es_store(self, line: str) -> None:
        """Open the session's event store and bind it to a variable.

        The store opened before (if any) is closed; the store is closed when the
        kernel stops.
        """
        args = self._args(self.es_store, line)
        # Checked before anything opens: opening closes the store the notebook has.
        if keyword.iskeyword(args.var):
            raise MagicError(
                f"%es_store --var {args.var}: {args.var!r} is a reserved word in Python, "
                f"so no variable can have that name; use another (e.g. --var {args.var}_ or "
                "--var store)"
            )
        if not args.var.isidentifier():
            raise MagicError(
                f"%es_store --var {args.var!r}: not a Python variable name; "
                "use letters, digits and underscores (e.g. --var store)"
            )
        try:
            store = self.session.open_store(args.path)
        except (OSError, ValueError, EventStoreError) as exc:
            raise MagicError(f"%es_store {redact_url(args.path)}: {exc}") from None
        self.user_ns[args.var] = store
        # The file's name, not its folder: a notebook's saved output then reads the
        # same wherever it ran (a temp folder differs per run and per OS).
        # es_session.store_path has the full path.
        if store.path == MEMORY:
            where = "in memory"
        elif str(store.path).startswith("postgresql://"):
            where = f"on PostgreSQL at {store.path}"  # no password: the store's place name
        else:
            where = f"in file {store_file_name(store)}"
        head = store.head_position()
        print(f"event store {where} is open as `{args.var}` (log head at position {head})")

    # -- %es_events -----------------------------------------------------------------------------
    @magic_arguments()
    @argument("aggregate_id", nargs="?", default=None, help="one aggregate's stream (default: all)")
    @argument("--type", dest="event_type", default=None, help="event type, full or short name")
    @argument("--last", type=int, default=None, help="only the last N events")
    @argument(
        "--brief",
        action="store_true",
        help="only position, aggregate_id, version, event_type and payload",
    )
    @argument("--columns", default=None, help="comma-separated columns to show, in that order")
    @line_magic
    def es_events(self, line: str) -> pd.DataFrame:
        """The session store's events as a DataFrame, payloads decoded when their classes are known.

        Message classes come from the session (``%%es_generate``, ``session.register``)
        and from every Repository in the notebook's variables.
        """
        args = self._args(self.es_events, line)
        if args.last is not None and args.last < 1:
            raise MagicError(f"%es_events --last {args.last}: give a number of events, 1 or more")
        store = self._store("%es_events")
        types = self.session.known_types(self.user_ns)
        columns: list[str] | None = None
        if args.columns:
            columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        elif args.brief:
            columns = list(frames.BRIEF_COLUMNS)
        try:
            frame = frames.store_events_frame(
                store,
                args.aggregate_id,
                event_type=args.event_type,
                last=args.last,
                types=types,
                columns=columns,
            )
        except ValueError as exc:
            raise MagicError(f"%es_events {line.strip()}: {exc}") from None
        if args.event_type and frame.empty:
            self._check_event_type(store, args.event_type, types)
        return frame

    def _check_event_type(self, store: Any, wanted: str, types: Any) -> None:
        """An empty table for a type nobody knows is a typo: say so, and list the real ones."""
        if any(frames.matches_event_type(name, wanted) for name in types):
            return
        in_store = sorted({e.event_type for e in store.iter_all()})
        if any(frames.matches_event_type(name, wanted) for name in in_store):
            return
        listed = ", ".join(in_store) if in_store else "none yet (the store is empty)"
        raise MagicError(
            f"%es_events --type {wanted}: no event type of that name, in the store or among "
            f"the known message classes. Event types in the store: {listed}. Give one of "
            "them, full or short (the message name)."
        )

    # -- %es_state ------------------------------------------------------------------------------
    @magic_arguments()
    @argument("aggregate_id", help="the aggregate to show")
    @argument("--repo", required=True, help="variable holding the Repository that loads it")
    @argument("--at", type=int, default=None, help="version to show (default: the latest)")
    @line_magic
    def es_state(self, line: str) -> pd.DataFrame:
        """An aggregate's state (at a version), loaded through a repository you built."""
        args = self._args(self.es_state, line)
        repo = self.user_ns.get(args.repo)
        if repo is None:
            raise MagicError(
                f"%es_state --repo {args.repo}: there is no variable {args.repo!r} in the "
                "notebook. Build a Repository (it knows how to apply the events) and name "
                "its variable here."
            )
        if not isinstance(repo, Repository):
            raise MagicError(
                f"%es_state --repo {args.repo}: {args.repo!r} is a {type(repo).__name__}, "
                "not a Repository. Name the variable holding your Repository."
            )
        try:
            aggregate = repo.load(args.aggregate_id, at_version=args.at)
            last = repo.store.stream_version(repo.stored_id(args.aggregate_id))
        except (EventStoreError, ValueError) as exc:
            current = self.session.store
            open_store = current if current is not None and not current.closed else None
            why = load_failure(repo, args, exc, open_store)
            raise MagicError(f"%es_state {shlex.quote(args.aggregate_id)}: {why}") from None
        origin = (
            f", from the snapshot at version {aggregate.snapshot_version}"
            if aggregate.snapshot_version
            else ""
        )
        print(f"{aggregate.type} {aggregate.id!r} at version {aggregate.version} of {last}{origin}")
        state = aggregate_state(aggregate)
        return pd.DataFrame(
            {
                "field": pd.Series(list(state), dtype="str"),
                "value": pd.Series(list(state.values()), dtype="object"),
            }
        )

    # -- %%es_generate -------------------------------------------------------------------------
    @magic_arguments()
    @argument(
        "--name",
        default="domain",
        help="variable for the generated module; the proto is named NAME.proto in errors",
    )
    @cell_magic
    def es_generate(self, line: str, cell: str) -> None:
        """Generate classes from the proto source in the cell and bind them in the notebook.

        Binds every generated message class, enum, aggregate, repository,
        client and server, and the module itself as NAME. Running a changed
        cell again replaces what the previous run of the same NAME bound. A
        last line names what this run rebinds that was not that run's own: a
        name bound by the run of another NAME, or defined in the notebook
        (also after ``%reload_ext``: the generated modules remember what they
        bound).
        A proto error fails the cell with ``cell:LINE:COL: message``, LINE
        counted as JupyterLab numbers the cell (the magic line is line 1).
        A NAME the proto also makes (``--name Plant`` beside ``message Plant``)
        fails the cell, as does a name the module lists but does not hold (a
        guard: none is known to go missing since live modules compile with the
        ``annotations`` future flag): nothing is bound then.
        """
        args = self._args(self.es_generate, line, prefix="%%")
        if keyword.iskeyword(args.name):
            raise MagicError(
                f"%%es_generate --name {args.name}: {args.name!r} is a reserved word in Python, "
                f"so no variable can have that name; use another (e.g. --name {args.name}_ or "
                "--name bank)"
            )
        if not args.name.isidentifier():
            raise MagicError(
                f"%%es_generate --name {args.name!r}: not a Python identifier; "
                "use letters, digits and underscores (e.g. --name bank)"
            )
        from ..codegen import CodegenError, generate_module

        # Taken before this run's module replaces its predecessor in sys.modules.
        earlier_modules = notebook_modules(sys.modules)
        module_key = _LIVE_PREFIX + args.name
        predecessor = sys.modules.get(module_key)
        try:
            module = generate_module(cell, name=args.name)
        except CodegenError as exc:
            # The cell's first line is the magic itself: proto line 1 is cell line 2.
            error = exc.shifted(f"{args.name}.proto", 1, new_file="cell")
            hints = proto_hints(cell)
            if hints:  # shown under protoc's message, above the general advice
                error.hint = "\n".join([*hints, error.hint])
                error.args = ("\n".join([*map(str, error.diagnostics), error.hint]),)
            raise error from None
        names = generated_names(module)
        lost = [
            n for n in getattr(module, "__all__", ()) if n not in names and not n.startswith("_")
        ]
        if args.name in names or lost:
            # Bound as NAME, the module would hide the generated name; a name the module
            # lost would be missing without a word. Refuse both, and leave sys.modules as
            # the previous run of NAME (if any) left it.
            if predecessor is None:
                sys.modules.pop(module_key, None)
            else:
                sys.modules[module_key] = predecessor
            if lost:
                raise MagicError(lost_names(args.name, lost))
            raise MagicError(name_clash(args.name, names[args.name], names))
        bound = {**names, args.name: module}
        setattr(module, BOUND_NAMES, tuple(bound))
        ns = self.user_ns
        # What earlier runs bound: the session's memory, and (for a session made again by
        # %reload_ext, which remembers nothing) the generated modules themselves.
        runs = earlier_runs(self.session.generated, [*ns.values(), *earlier_modules])
        for run, run_names in runs:
            if run != args.name:
                continue
            for old_name, old_value in run_names.items():
                if old_name not in bound and ns.get(old_name) is old_value:
                    del ns[old_name]
        replaced = replaced_names(bound, ns, runs, args.name)
        ns.update(bound)
        self.session.generated[args.name] = bound
        self.session.register(
            *(v for v in names.values() if isinstance(v, type) and issubclass(v, Message))
        )
        print(generation_summary(module, args.name, len(names)))
        if replaced:
            print(replaced)

    # -- helpers --------------------------------------------------------------------------------
    def _store(self, needed_by: str) -> Any:
        try:
            return self.session.require_store(needed_by)
        except NoStoreError as exc:
            raise MagicError(str(exc)) from None


def load_failure(repo: Repository[Any], args: Any, exc: Exception, open_store: Any) -> str:
    """Why ``%es_state`` could not load the aggregate, and what to do, in one line.

    The store's own message names the cause; two causes a notebook makes easily
    deserve their own way out: a repository built on a store that ``%es_store``
    (or the reader) has since closed, and a repository of another aggregate type
    than the id's. ``open_store`` is the session's open store, if any.
    """
    if isinstance(exc, StoreClosedError):
        remake = f"`{args.repo} = {type(repo).__name__}(store, ...)`"
        if open_store is not None and open_store is not repo.store:
            return (
                f"the repository `{args.repo}` reads event store {redact_url(exc.store)!r}, "
                "which %es_store closed when it opened another. Make the repository again on "
                f"the open store ({remake}) and run this again."
            )
        return (
            f"the repository `{args.repo}` reads event store {redact_url(exc.store)!r}, which "
            f"is closed. Open a store (%es_store), make the repository again on it ({remake}) "
            "and run this again."
        )
    if isinstance(exc, AggregateTypeMismatchError):
        return (
            f"the events of {args.aggregate_id!r} are of aggregate type {exc.stored_type!r}, "
            f"and the repository `{args.repo}` loads {exc.aggregate_type!r}. Use the "
            f"repository of {exc.stored_type!r} (--repo VAR)."
        )
    if isinstance(exc, EventDecodeError):
        with contextlib.suppress(Exception):  # only to explain; the store's message stands
            first = repo.store.load_stream(repo.stored_id(args.aggregate_id), up_to_version=1)[0]
            stored = first.aggregate_type
            loads = repo.factory(args.aggregate_id).type
            if stored != loads:
                return (
                    f"the events of {args.aggregate_id!r} are of aggregate type {stored!r}, and "
                    f"the repository `{args.repo}` loads {loads!r}. Use the repository of "
                    f"{stored!r} (--repo VAR)."
                )
    return str(exc)


def store_file_name(store: Any) -> str:
    """The file's name, also for a ``file:`` URI (``file:/data/bank.db?mode=ro``: bank.db)."""
    path = str(store.path)
    if path.startswith("file:"):
        path = path[5:].partition("?")[0]
    return os.path.basename(path)


def generated_names(module: ModuleType) -> dict[str, Any]:
    """The names ``%%es_generate`` binds: what the generator made, not its imports.

    The generated source starts with ``from __future__ import annotations``, which
    leaves a module variable ``annotations``: that one is skipped, a generated class
    of that name (``message annotations {}``) is not.
    """
    names: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key.startswith("_") or isinstance(value, ModuleType):
            continue
        if key == "annotations" and type(value).__module__ == "__future__":
            continue
        names[key] = value
    return names


def lost_names(name: str, lost: Sequence[str]) -> str:
    """Why names the generated module should hold are missing from it, and the way out."""
    listed = ", ".join(f"`{n}`" for n in lost)
    why = (
        " (the generated code starts with `from __future__ import annotations`, which takes "
        "that name)"
        if "annotations" in lost
        else ""
    )
    return (
        f"%%es_generate --name {name}: the generated module lists {listed} but does not hold "
        f"{'it' if len(lost) == 1 else 'them'}{why}, so "
        f"{'it' if len(lost) == 1 else 'they'} cannot be bound in the notebook. Rename "
        f"{'that message or enum' if len(lost) == 1 else 'those messages or enums'} in the "
        "proto and generate again."
    )


def name_clash(name: str, value: Any, names: Mapping[str, Any]) -> str:
    """Why ``%%es_generate --name NAME`` cannot bind the module when the proto makes a
    NAME too, and a name to give instead."""
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

    kind = (
        "class"
        if isinstance(value, type)
        else "enum"
        if isinstance(value, EnumTypeWrapper)
        else "name"
    )
    other = next(
        (
            c
            for c in (name.lower(), f"{name}_module", f"{name}_domain")
            if c != name and c not in names and not keyword.iskeyword(c)
        ),
        "bank",
    )
    return (
        f"%%es_generate --name {name}: the proto makes the {kind} `{name}`, and the module "
        f"would be bound as `{name}` too, hiding it. Give the module another name "
        f"(e.g. --name {other})"
    )


_SYNTAX = re.compile(r"^\s*syntax\s*=", re.M)
_OPTIONS_IMPORT = re.compile(r'^\s*import\s+"eventsourcing/options\.proto"\s*;', re.M)


def proto_hints(source: str) -> list[str]:
    """What to add when the cell lacks a line protoc's message does not point to."""
    hints = []
    if not _SYNTAX.search(source):
        hints.append(
            'hint: the cell has no `syntax = "proto3";` line, so protoc reads it as proto2 '
            "(where every field needs a label): add it as the first line under the magic."
        )
    if "(eventsourcing." in source and not _OPTIONS_IMPORT.search(source):
        hints.append(
            "hint: the cell uses eventsourcing options without importing them: add "
            '`import "eventsourcing/options.proto";` below the package line.'
        )
    return hints


BOUND_NAMES = "__es_notebook_names__"
"""The attribute of a module ``%%es_generate`` made: the names it bound in the notebook."""

# codegen.live.LIVE_PACKAGE, spelled out: importing codegen would slow %load_ext.
_LIVE_PREFIX = "eventstore.codegen.live."


def notebook_modules(modules: Mapping[str, Any]) -> list[ModuleType]:
    """The modules ``%%es_generate`` made among ``modules`` (``sys.modules``)."""
    return [
        module
        for key, module in list(modules.items())
        if key.startswith(_LIVE_PREFIX) and _bound_names(module) is not None
    ]


def _bound_names(value: Any) -> tuple[str, ...] | None:
    """The names a module made by ``%%es_generate`` bound; None for anything else.

    A module that ``generate_module`` made for other code (a dataset) has no such
    record, so its classes are never taken for the notebook's.
    """
    if not isinstance(value, ModuleType):
        return None
    attributes = vars(value)  # not getattr: no module __getattr__ runs
    if not str(attributes.get("__name__", "")).startswith(_LIVE_PREFIX):
        return None
    names = attributes.get(BOUND_NAMES)
    return names if isinstance(names, tuple) else None


def earlier_runs(
    remembered: Mapping[str, dict[str, Any]], values: Iterable[Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(NAME, the names bound and their values) of earlier ``%%es_generate`` runs.

    ``remembered`` is the session's memory of them; ``values`` are objects that may
    be modules such runs made (the notebook's variables, ``sys.modules``): each one
    records the names it bound, and holds their values, so the runs are known even
    to a session that ``%reload_ext`` made anew.
    """
    runs = list(remembered.items())
    seen = {id(names.get(run)) for run, names in runs}
    for value in values:
        names = _bound_names(value)
        if names is None or id(value) in seen:
            continue
        seen.add(id(value))
        run = str(vars(value)["__name__"]).removeprefix(_LIVE_PREFIX)
        module_vars = vars(value)
        run_names = {key: module_vars[key] for key in names if key in module_vars}
        run_names[run] = value  # the module itself, bound as NAME
        runs.append((run, run_names))
    return runs


def replaced_names(
    bound: dict[str, Any],
    ns: Mapping[str, Any],
    runs: list[tuple[str, dict[str, Any]]],
    name: str,
) -> str:
    """A line naming what this generation rebinds that was not its own run's before.

    A name whose value in the notebook is the one an earlier run of ``name`` bound is
    not listed (re-running a cell replaces its own classes); one another NAME's run
    bound is listed with that NAME; anything else was defined in the notebook.
    """
    by_owner: dict[str, list[str]] = {}
    for key, value in bound.items():
        if key not in ns or ns[key] is value:
            continue
        owners = [run for run, names in runs if key in names and names[key] is ns[key]]
        if name in owners:
            continue
        by_owner.setdefault(owners[0] if owners else "", []).append(key)
    if not by_owner:
        return ""
    parts = [
        f"{', '.join(keys)} (from %%es_generate --name {owner})"
        if owner
        else f"{', '.join(keys)} (defined in the notebook)"
        for owner, keys in by_owner.items()
    ]
    return f"replaced names already in the notebook: {'; '.join(parts)}"


def generation_summary(module: ModuleType, name: str, bound: int) -> str:
    model = getattr(module, "__es_model__", None)
    lines = [f"generated `{name}`: {bound} names bound in the notebook"]
    if model is not None:
        for kind, items in model.summary().items():
            if items:
                short = ", ".join(i.rsplit(".", 1)[-1] for i in items)
                lines.append(f"  {kind:<10} {short}")
    return "\n".join(lines)
