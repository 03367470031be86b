"""The code generated for one aggregate: its event constants and registry, then five definitions.

The applier protocol (one method per event), the aggregate class (the state's
fields as properties), the ``new_<type>`` constructor, the repository and the
projection builder, each written by its own function in that order.
"""

from __future__ import annotations

from .. import naming
from ..model import AggregateInfo, FieldInfo, Model, TypeRef
from .names import _expr, _Unit, events_registry
from .text import LINE, _call_with_list, _docstring, _Out, _str, _wrapped


def _aggregate(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    """Everything generated for ``a``, after a section comment naming it."""
    out.blank(2)
    out.add(f"# -- {a.type_name} " + "-" * max(3, LINE - 6 - len(a.type_name)))
    _event_types(out, model, unit, a)
    _applier_protocol(out, model, unit, a)
    _aggregate_class(out, model, unit, a)
    _constructor(out, a)
    _repository_class(out, a)
    _projection_builder(out, model, unit, a)


def _event_types(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    """One constant per event full name, and the registry that decodes them."""
    if a.events:
        out.blank()
        for e in a.events:
            out.add(f"{e.constant} = {_str(e.full_name)}")
    out.blank()
    out.add(f"#: The {a.type_name} event types, to decode stored events.")
    out.extend(
        _call_with_list(
            "",
            f"{events_registry(a)} = _es.EventTypeRegistry(",
            [_expr(model, unit, e.full_name) for e in a.events],
            "",
        )
    )


def _applier_protocol(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    p = a.class_prefix
    out.blank(2)
    out.add(f"class {p}EventApplier(_t.Protocol):")
    out.extend(
        _docstring(
            "    ",
            f"Applies {a.type_name} events to the aggregate's state, one method per event.\n\n"
            "Appliers must not fail for events already stored: they run again on every load.",
        )
    )
    for e in a.events:
        out.blank()
        out.extend(
            _wrapped(
                "    ",
                f"def {e.applier_method}(",
                ["self", f"agg: {p}Aggregate", f"event: {_expr(model, unit, e.full_name)}"],
                ") -> None:",
            )
        )
        out.extend(
            _docstring(
                "        ",
                e.message.comment or f"Apply {naming.with_article(e.message.name)} to ``agg``.",
            )
        )
        out.add("        ...")


def _aggregate_class(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    p, state = a.class_prefix, _expr(model, unit, a.message.full_name)
    out.blank(2)
    out.add(f"class {p}Aggregate(_es.GeneratedAggregate):")
    doc = a.message.comment or f"The {a.type_name} aggregate."
    doc += (
        f"\n\nIts state is the {a.message.full_name} message ``state``; the state's fields "
        "are attributes of the aggregate, read and written in place."
    )
    if a.clashing_fields:
        doc += (
            " These fields are named like attributes of the aggregate itself, so reach them "
            "through ``state``: "
            + ", ".join(f"``{naming.attribute_access('state', n)}``" for n in a.clashing_fields)
            + "."
        )
    out.extend(_docstring("    ", doc))
    out.blank()
    out.add(f"    aggregate_type = {_str(a.type_name)}")
    out.add(f"    schema_key = {_str(a.schema_key)}")
    out.add(f"    state_type = {state}")
    if a.id_field:
        out.add(f"    id_field = {_str(a.id_field)}")
    out.add(f"    applier_protocol = {_str(p + 'EventApplier')}")
    out.extend(
        _call_with_list(
            "    ",
            "event_appliers = _es.MappingProxyType(",
            [f"{e.constant}: {_str(e.applier_method)}" for e in a.events],
            "",
            "{}",
        )
    )
    out.extend(
        _call_with_list(
            "    ",
            "state_fields = frozenset(",
            [_str(f.name) for f in a.forwarded_fields],
            "",
            "{}",
        )
        if a.forwarded_fields
        else ["    state_fields = frozenset()"]
    )
    out.blank()
    out.add(f"    state: {state}", f"    applier: {p}EventApplier")
    out.blank()
    out.extend(
        _wrapped(
            "    ",
            "def __init__(",
            ["self", "aggregate_id: str", f"applier: {p}EventApplier"],
            ") -> None:",
        )
    )
    out.add("        super().__init__(aggregate_id, applier)")
    _state_properties(out, model, unit, a)


def _state_properties(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    """A property with a setter per forwarded state field, read and written in place."""
    for f in a.forwarded_fields:
        ann = _annotation(model, unit, f)
        out.blank()
        out.add("    @property")
        out.extend(_wrapped("    ", f"def {f.name}(", ["self"], f") -> {ann}:"))
        out.add(f"        return self.state.{f.name}")
        out.blank()
        out.add(f"    @{f.name}.setter")
        out.extend(_wrapped("    ", f"def {f.name}(", ["self", f"value: {ann}"], ") -> None:"))
        out.add(f"        {_setter(f)}")


def _annotation(model: Model, unit: _Unit, f: FieldInfo) -> str:
    def one(ref: TypeRef) -> str:
        return ref.py if ref.kind == "scalar" else _expr(model, unit, ref.full_name)

    if f.map_key is not None:
        return f"_abc.MutableMapping[{one(f.map_key)}, {one(f.value)}]"
    if f.repeated:
        return f"_abc.MutableSequence[{one(f.value)}]"
    return one(f.value)


def _setter(f: FieldInfo) -> str:
    if f.map_key is not None:
        return f"_es.set_map(self.state.{f.name}, value)"
    if f.repeated:
        return f"_es.set_repeated(self.state.{f.name}, value)"
    if f.value.kind == "message":
        return f"self.state.{f.name}.CopyFrom(value)"
    return f"self.state.{f.name} = value"


def _constructor(out: _Out, a: AggregateInfo) -> None:
    p = a.class_prefix
    out.blank(2)
    out.extend(
        _wrapped(
            "",
            f"def new_{a.snake}(",
            ["aggregate_id: str", f"applier: {p}EventApplier"],
            f") -> {p}Aggregate:",
        )
    )
    id_text = f" with ``{a.id_field}`` set to the id" if a.id_field else ""
    out.extend(_docstring("    ", f"A new {a.type_name} at version 0{id_text}."))
    out.add(f"    return {p}Aggregate(aggregate_id, applier)")


def _repository_class(out: _Out, a: AggregateInfo) -> None:
    p = a.class_prefix
    out.blank(2)
    # Quoted: typing caches every subscription it evaluates, and a class in that cache
    # would keep each generation of a re-run notebook cell alive.
    out.add(f'class {p}Repository(_es.Repository["{p}Aggregate"]):')
    snap = (
        f" Without a snapshot strategy it snapshots every {a.snapshot_every} events "
        "(the aggregate_root option snapshot_every) where snapshots can be stored: not on "
        "a store without them, such as a handler's ctx.store."
        if a.snapshot_every
        else ""
    )
    out.extend(
        _docstring(
            "    ",
            f"Loads {a.type_name} aggregates by replaying their events, and saves new ones." + snap,
        )
    )
    out.blank()
    out.extend(
        _wrapped(
            "    ",
            "def __init__(",
            [
                "self",
                "store: _es.EventStore",
                f"applier: {p}EventApplier",
                "snapshot_strategy: _es.SnapshotStrategy | None = None",
                "*",
                "snapshot_store: _es.SnapshotStore | None = None",
                "upcasters: _es.Upcasters | None = None",
                "snapshot_upcaster: _es.SnapshotUpcaster | None = None",
                "cache: int = 0",
                "tenant_isolation: bool = False",
            ],
            ") -> None:",
        )
    )
    if a.snapshot_every:
        # The option is a default, so a store without snapshots (a handler's ctx.store)
        # is a repository without them, as it is for an aggregate without the option.
        out.add("        if snapshot_strategy is None and (")
        out.add("            snapshot_store is not None or isinstance(store, _es.SnapshotStore)")
        out.add("        ):")
        out.add(f"            snapshot_strategy = _es.EveryNEvents({a.snapshot_every})")
    out.add("        self.applier = applier")
    out.add("        super().__init__(")
    out.add("            store,")
    out.add("            self._new,")
    out.add(f"            event_types={events_registry(a)},")
    out.add("            snapshot_store=snapshot_store,")
    out.add("            snapshot_strategy=snapshot_strategy,")
    out.add("            upcasters=upcasters,")
    out.add("            snapshot_upcaster=snapshot_upcaster,")
    out.add("            cache=cache,")
    out.add("            tenant_isolation=tenant_isolation,")
    out.add("        )")
    out.blank()
    out.add(f"    def _new(self, aggregate_id: str) -> {p}Aggregate:")
    out.add(f"        return {p}Aggregate(aggregate_id, self.applier)")


def _projection_builder(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    p = a.class_prefix
    out.blank(2)
    out.add(f"class {p}ProjectionBuilder(_es.ProjectionBuilder):")
    out.extend(
        _docstring(
            "    ",
            f"Builds a projection of {a.type_name} events.\n\n"
            "Register ``on_<event>(handler)`` for the events it needs and ``on_reset``, then "
            "call ``build()``. A handler takes ``(event, envelope)`` or "
            "``(event, envelope, ctx)``. The methods return the builder, so they chain; "
            "as decorators, name the function ``_``.",
        )
    )
    out.blank()
    out.add(f"    event_types = {events_registry(a)}")
    for e in a.events:
        ev = _expr(model, unit, e.full_name)
        out.blank()
        out.extend(
            _wrapped(
                "    ",
                f"def {e.projection_method}(",
                ["self", f"handler: _es.EventHandler[{ev}]"],
                ") -> _t.Self:",
            )
        )
        out.add(f"        return self._on({e.constant}, handler)")
