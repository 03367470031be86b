"""``protoc-gen-eventsourcing``: the protoc plugin that writes ``<name>_pb2.py``,
``<name>_pb2.pyi`` and ``<name>_es.py``.

Use it with any protoc, for example through grpcio-tools, **instead of**
``--python_out``/``--pyi_out``::

    python -m grpc_tools.protoc -Iproto -Ieventstore/proto \\
        --plugin=protoc-gen-eventsourcing=$(which protoc-gen-eventsourcing) \\
        --eventsourcing_out=out bank/account.proto

The ``_pb2`` modules are protoc's Python output (grpcio-tools' generator, run in
this process on the descriptors protoc hands over) with the options imported from
``eventstore.proto.eventsourcing``, as ``eventstore generate`` writes them: protoc's
own ``--python_out`` writes ``from eventsourcing import options_pb2``, which fails
or finds the ``eventsourcing`` library (DESIGN decision 12). Passing
``--python_out`` to the same directory as well makes protoc stop with "Tried to
write the same file twice".

The model is built from every file protoc hands over (events and services
may live in files that import the aggregate's); one ``_es.py`` is written per
requested file that declares an aggregate or a service, and ``es_sdk.py``
(one ``SDK`` over all services) when the services span several files. Model
warnings go to stderr, which protoc shows.

It takes editions files up to ``MAXIMUM_EDITION``, as ``eventstore generate`` and
``generate_module`` do. A plugin can only write files: an ``_es.py`` or
``es_sdk.py`` that an earlier run wrote and this one does not stays behind
(``eventstore generate`` removes those).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from . import naming
from .build import build_model
from .errors import CodegenError, Diagnostic
from .model import SKIPPED_FILES
from .python_out import python_modules
from .render import SDK_MODULE_PATH, render_file, render_run_sdk


def render_files(
    files_to_generate: Sequence[str],
    proto_files: Sequence[descriptor_pb2.FileDescriptorProto],
    rename: dict[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> tuple[list[tuple[str, str]], list[Diagnostic]]:
    """``(path, content)`` of each ``_es.py`` to write, and the warnings about those files.

    ``sources`` (proto file name -> text) lets errors point inside option values.
    Raises ``CodegenError`` when the protos do not fit together.
    """
    model = build_model(proto_files, rename=rename, sources=sources)
    out: list[tuple[str, str]] = []
    for name in files_to_generate:
        if name in SKIPPED_FILES:
            continue
        rendered = render_file(model, name)
        if rendered is not None:
            out.append((naming.es_path(name), rendered.source))
    sdk = render_run_sdk(model, [f for f in files_to_generate if f not in SKIPPED_FILES])
    if sdk is not None:
        out.append((SDK_MODULE_PATH, sdk))
    shown = {(rename or {}).get(f, f) for f in files_to_generate}
    return out, [w for w in model.warnings if w.file in shown]


#: The editions the plugin accepts: those of the Python generator it runs (grpcio-tools'
#: protoc, which ``eventstore generate`` and ``generate_module`` compile with too), so the
#: three accept the same files. A newer edition is refused by protoc with its own message.
MINIMUM_EDITION = descriptor_pb2.EDITION_PROTO2
MAXIMUM_EDITION = descriptor_pb2.EDITION_2024

SUPPORTED_FEATURES = (
    plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    | plugin_pb2.CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS
)


def generate(
    request: plugin_pb2.CodeGeneratorRequest,
) -> tuple[plugin_pb2.CodeGeneratorResponse, list[Diagnostic]]:
    """The plugin's answer to ``request``, and the model's warnings."""
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=SUPPORTED_FEATURES,
        minimum_edition=MINIMUM_EDITION,
        maximum_edition=MAXIMUM_EDITION,
    )
    try:
        files, warnings = render_files(request.file_to_generate, request.proto_file)
        files = python_modules(request.file_to_generate, request.proto_file) + files
    except CodegenError as error:
        response.error = str(error)
        return response, []
    for name, content in files:
        response.file.add(name=name, content=content)
    return response, warnings


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response, warnings = generate(request)
    for warning in warnings:
        print(
            f"{warning.file}:{warning.line}:{warning.column}: warning: {warning.message}",
            file=sys.stderr,
        )
    sys.stdout.buffer.write(response.SerializeToString())
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
