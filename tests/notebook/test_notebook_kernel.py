"""The "Event Sourcing (Python)" kernel spec: install, start with the extension, widgets in it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from eventstore.notebook.kernel import DISPLAY_NAME, KERNEL_NAME, install, kernel_spec

ROOT = Path(__file__).resolve().parents[2]


def test_the_checked_in_kernel_spec_is_the_generated_one_with_plain_python():
    checked_in = json.loads((ROOT / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert checked_in == kernel_spec("python")
    assert checked_in["display_name"] == "Event Sourcing (Python)"
    assert checked_in["argv"][-2:] == ["--ext", "eventstore.notebook"]


def test_install_into_a_prefix_writes_a_spec_that_runs_this_python(tmp_path):
    folder = Path(install(prefix=str(tmp_path)))
    assert folder == tmp_path / "share" / "jupyter" / "kernels" / KERNEL_NAME
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    assert spec["display_name"] == DISPLAY_NAME


def test_the_install_command_installs_into_the_given_prefix(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "eventstore.notebook.kernel", "install", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "installed kernel 'Event Sourcing (Python)'" in done.stdout
    found = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    assert found.get_kernel_spec(KERNEL_NAME).display_name == DISPLAY_NAME


@pytest.mark.parametrize(
    ("where", "name", "said"),
    [
        (["--prefix", "{tmp}"], "Event Sourcing", "Invalid kernel name 'event sourcing'"),
        # sysfs refuses every writer, root included
        (["--prefix", "/sys/eventstore-kernel"], "eventsourcing", "Choose a folder you can write"),
    ],
)
def test_install_refusals_are_one_line_with_the_fix(tmp_path, where, name, said):
    args = [a.format(tmp=tmp_path) for a in where]
    done = subprocess.run(
        [sys.executable, "-m", "eventstore.notebook.kernel", "install", *args, "--name", name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and said in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingKernelClient]:
    """The installed kernel, started for real; the tests talk to it over ZMQ."""
    prefix = tmp_path_factory.mktemp("kernel-prefix")
    install(prefix=str(prefix))
    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    manager.start_kernel(cwd=str(ROOT), env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def execute(client: BlockingKernelClient, code: str, timeout: float = 30) -> str:
    """Run code in the kernel; return its stdout; fail with the kernel's error if it raised."""
    msg_id = client.execute(code)
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


def test_the_kernel_starts_with_the_extension_loaded(kernel):
    out = execute(kernel, "%es_store --var s\nprint(type(s).__name__, s.path)")
    assert "SQLiteEventStore :memory:" in out


def test_an_async_send_clicked_in_a_real_kernel_runs_on_its_loop(kernel):
    setup = """
import asyncio
from google.protobuf import wrappers_pb2
from eventstore.notebook.widgets import CommandForm

async def send(message):
    await asyncio.sleep(0.01)
    return message

form = CommandForm(wrappers_pb2.StringValue, send)
form.input("value").value = "hello"
print(form.send_button.model_id)
"""
    model_id = execute(kernel, setup).strip()
    # What JupyterLab sends when the button is clicked.
    click = kernel.session.msg(
        "comm_msg",
        {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}},
    )
    kernel.shell_channel.send(click)
    out = execute(kernel, "await form.wait()\nprint(repr(form.output_text()))")
    assert "reply: google.protobuf.StringValue" in out
    assert "value = 'hello'" in out
    try:  # drain what the comm traffic left on the iopub channel
        while True:
            kernel.get_iopub_msg(timeout=0.01)
    except queue.Empty:
        pass
