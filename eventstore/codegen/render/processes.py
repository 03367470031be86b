"""The code generated for one process manager: a base class a user subclasses.

It carries the manager's name, its state message and the events it reacts to
(the runner's event-type filter), and one typed handler stub per event, which
the subclass defines (``GeneratedProcessManager`` checks that it does).
"""

from __future__ import annotations

from .. import naming
from ..model import Model, ProcessManagerInfo
from .names import _expr, _Unit
from .text import LINE, _call_with_list, _docstring, _Out, _str, _wrapped


def _process_manager(out: _Out, model: Model, unit: _Unit, p: ProcessManagerInfo) -> None:
    """The ``<Name>ProcessManager`` class, after a section comment naming the manager."""
    state = _expr(model, unit, p.message.full_name)
    title = f"{p.name} (process manager)"
    out.blank(2)
    out.add(f"# -- {title} " + "-" * max(3, LINE - 6 - len(title)))
    out.blank(2)
    out.add(f"class {p.class_name}(_es.GeneratedProcessManager):")
    doc = p.message.comment or f"The process manager {p.name}."
    doc += (
        f"\n\nSubclass it and define the handler of every event it reacts to; a handler "
        f"reads and changes ``state`` (a {p.message.full_name} message, stored with the "
        "runner's checkpoint), sends commands with ``process.send(step, command)`` and "
        "arms timeouts with ``process.schedule(step, after)``. Override ``on_timeout`` and "
        "``on_rejected`` for the compensations."
    )
    out.extend(_docstring("    ", doc))
    out.blank()
    out.add(f"    name = {_str(p.name)}")
    out.add(f"    state_type = {state}")
    events = [_expr(model, unit, r.full_name) for r in p.reactions]
    if len(events) == 1:
        out.add(f"    event_types = ({events[0]},)")
    else:
        out.extend(_wrapped("    ", "event_types = (", events, ")"))
    out.extend(
        _call_with_list(
            "    ",
            "event_handlers = _es.MappingProxyType(",
            [f"{_str(r.full_name)}: {_str(r.method)}" for r in p.reactions],
            "",
            "{}",
        )
    )
    for r in p.reactions:
        event = _expr(model, unit, r.full_name)
        out.blank()
        out.extend(
            _wrapped(
                "    ",
                f"def {r.method}(",
                [
                    "self",
                    "process: _es.Process",
                    f"state: {state}",
                    f"event: {event}",
                    "envelope: _es.Event",
                ],
                ") -> None:",
            )
        )
        doc = r.message.comment or f"React to {naming.with_article(r.message.name)}."
        out.extend(_docstring("        ", doc))
        out.add("        ...")
    out.blank()
    out.extend(
        _wrapped(
            "    ",
            "def on_timeout(",
            ["self", "process: _es.Process", f"state: {state}", "step: str"],
            ") -> None:",
        )
    )
    out.extend(_docstring("        ", "A timeout armed with ``process.schedule`` fired."))
    out.blank()
    out.extend(
        _wrapped(
            "    ",
            "def on_rejected(",
            [
                "self",
                "process: _es.Process",
                f"state: {state}",
                "step: str",
                "error: _es.AppError",
            ],
            ") -> None:",
        )
    )
    out.extend(_docstring("        ", "The command of ``step`` was refused with ``error``."))
