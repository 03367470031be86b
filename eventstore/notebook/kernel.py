"""The "Event Sourcing (Python)" kernel: a Python kernel that starts with the extension loaded.

    python -m eventstore.notebook.kernel install [--user | --sys-prefix | --prefix DIR]
    python -m eventstore.notebook.kernel check      # exit 1 when the extension does not load
    python -m eventstore.notebook.kernel spec       # print the kernel.json

The installed spec runs the Python that installed it (``sys.executable``), so
the kernel sees the environment where eventstore is installed. The spec
checked in at ``kernels/eventsourcing/kernel.json`` is the same with plain
``python`` (for ``jupyter kernelspec install kernels/eventsourcing``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KERNEL_NAME = "eventsourcing"
DISPLAY_NAME = "Event Sourcing (Python)"
EXTENSION = "eventstore.notebook"


def kernel_spec(python: str | None = None) -> dict[str, Any]:
    """The kernel.json content: an IPython kernel with ``--ext eventstore.notebook``."""
    return {
        "argv": [
            python or sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--ext",
            EXTENSION,
        ],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }


def install(
    *,
    user: bool = False,
    prefix: str | None = None,
    name: str = KERNEL_NAME,
    python: str | None = None,
) -> str:
    """Install the kernel spec; returns the folder it went to.

    ``user`` installs for this user, ``prefix`` under ``PREFIX/share/jupyter/kernels``
    (``sys.prefix`` for the active environment); neither: the system-wide folder.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "kernel.json").write_text(
            json.dumps(kernel_spec(python), indent=2) + "\n", encoding="utf-8"
        )
        return str(
            KernelSpecManager().install_kernel_spec(
                str(folder), kernel_name=name, user=user, prefix=prefix
            )
        )


def check() -> list[str]:
    """Load the extension in a fresh IPython shell and run its magics once.

    Returns the magics found; raises when anything fails (binder/postBuild
    relies on that to fail the build).
    """
    from IPython.core.history import HistoryAccessor
    from IPython.core.interactiveshell import InteractiveShell

    HistoryAccessor.enabled = False  # type: ignore[assignment]
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", EXTENSION)
    line_magics = shell.magics_manager.magics["line"]
    wanted = ["es_store", "es_events", "es_state"]
    missing = [m for m in wanted if m not in line_magics]
    if missing:
        raise RuntimeError(
            f"{EXTENSION} loaded but did not register {missing}; reinstall eventstore "
            "with its notebook extra: pip install 'eventstore[notebook]'"
        )
    result = shell.run_cell("%es_store :memory: --var _es_check_store\n_es_frame = %es_events")
    if not result.success:
        error = result.error_in_exec or result.error_before_exec
        raise RuntimeError(f"the {EXTENSION} magics failed in a fresh shell: {error!r}")
    frame = shell.user_ns["_es_frame"]
    if len(frame) != 0 or "event_type" not in frame.columns:
        raise RuntimeError("%es_events on an empty store did not return an empty event table")
    shell.run_line_magic("unload_ext", EXTENSION)
    return wanted + [m for m in shell.magics_manager.magics["cell"] if m.startswith("es_")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eventstore.notebook.kernel",
        description=f"Install or check the {DISPLAY_NAME!r} Jupyter kernel.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inst = commands.add_parser("install", help="install the kernel spec")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user")
    where.add_argument(
        "--sys-prefix", action="store_true", help="into this environment (sys.prefix)"
    )
    where.add_argument("--prefix", help="under PREFIX/share/jupyter/kernels")
    inst.add_argument("--name", default=KERNEL_NAME, help=f"kernel name (default {KERNEL_NAME})")
    commands.add_parser("check", help="load the extension in a fresh shell; exit 1 if it fails")
    commands.add_parser("spec", help="print the kernel.json this Python would install")
    args = parser.parse_args(argv)

    if args.command == "spec":
        print(json.dumps(kernel_spec(), indent=2))
        return 0
    if args.command == "check":
        try:
            magics = check()
        except Exception as exc:
            print(f"{EXTENSION} does not load: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"{EXTENSION} loads; magics: {', '.join('%' + m for m in magics)}")
        return 0
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(user=args.user, prefix=prefix, name=args.name)
    except ValueError as exc:  # jupyter_client's check of the kernel name: says what is allowed
        print(f"kernel not installed: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        target = "--user" if args.user else prefix or "the system-wide kernels folder"
        print(
            f"kernel not installed into {target}: {exc.strerror or exc} "
            f"({exc.filename or 'the kernels folder'}). Choose a folder you can write to "
            "(--user, --sys-prefix or --prefix PATH).",
            file=sys.stderr,
        )
        return 2
    print(f"installed kernel {DISPLAY_NAME!r} ({args.name}) in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
