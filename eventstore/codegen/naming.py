"""Naming rules shared by the model and the renderer (the same for every domain)."""

from __future__ import annotations

import keyword
import re

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """``AccountOpenedEvent`` -> ``account_opened_event``; ``HTTPServer`` -> ``http_server``."""
    return _BOUNDARY.sub("_", name).replace("__", "_").lower()


def camel(name: str) -> str:
    """A type name as a class-name prefix: ``bank_account`` -> ``BankAccount``."""
    if "_" in name or name[:1].islower():
        return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return name


def pb2_module(proto_file: str) -> str:
    """The Python module protoc writes for ``proto_file`` (``a/b-c.proto`` -> ``a.b_c_pb2``)."""
    stem = proto_file.removesuffix(".proto").replace("-", "_")
    return stem.replace("/", ".") + "_pb2"


def es_module(proto_file: str) -> str:
    """The module the generator writes for ``proto_file`` (``a/b.proto`` -> ``a.b_es``)."""
    return pb2_module(proto_file).removesuffix("_pb2") + "_es"


def es_path(proto_file: str) -> str:
    return es_module(proto_file).replace(".", "/") + ".py"


def is_importable(module: str) -> bool:
    """Whether ``import module`` can be written: every dotted part an identifier, none a
    keyword (``class.v1.thing_pb2`` cannot; protoc's own output uses importlib for it)."""
    return all(is_identifier(part) for part in module.split("."))


def module_alias(module: str) -> str:
    """A private name for ``module`` imported with importlib: ``_pb_class_v1_thing_pb2``."""
    return "_pb_" + module.replace(".", "_")


def is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


_A_BEFORE_U = ("uni", "use", "usa", "usu", "uti", "ura", "uro", "eu", "one")


def with_article(word: str) -> str:
    """``word`` after "a" or "an", by how it is likely said: ``an Added``, ``a User``."""
    lower = word.lower()
    vowel = lower[:1] in ("a", "e", "i", "o", "u") and not lower.startswith(_A_BEFORE_U)
    return f"{'an' if vowel else 'a'} {word}"


def attribute_access(target: str, name: str) -> str:
    """Python reaching attribute ``name`` of ``target``: ``getattr(agg.state, "class")`` for a
    keyword, which ``agg.state.class`` would make a SyntaxError."""
    if keyword.iskeyword(name) or not name.isidentifier():
        return f'getattr({target}, "{name}")'
    return f"{target}.{name}"
