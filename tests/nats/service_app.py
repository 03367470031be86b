"""Services the NATS service tests serve, in the test process or under ``eventstore serve``.

``services(store)`` is the bank's; with ``ES_TEST_KILL_AFTER_COMMIT`` set to a
file path, the first deposit kills the process (SIGKILL) after its events are
committed and before the reply is sent, and leaves the file behind so the
next process serves normally: a reply lost after commit.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from eventstore.core.routing import RequestContext, ServiceBinding
from examples.bankaccount import service as bank


def services(store: object) -> list[ServiceBinding]:
    bindings = bank.services(store)  # type: ignore[arg-type]
    marker = os.environ.get("ES_TEST_KILL_AFTER_COMMIT")
    if marker:
        commands = bindings[0].handler  # type: ignore[attr-defined]
        deposit = commands.deposit

        def deposit_then_die(cmd: Any, ctx: RequestContext) -> Any:
            reply = deposit(cmd, ctx)
            if not Path(marker).exists():
                Path(marker).write_text(ctx.command_id)
                os.kill(os.getpid(), signal.SIGKILL)
            return reply

        commands.deposit = deposit_then_die
        bindings[0] = type(bindings[0])(commands)
    return bindings


def projections(store: object) -> list[tuple[Any, Any]]:
    """A projection counting deposits into ``ES_TEST_READ_MODEL`` (a SQLite read model)."""
    path = os.environ.get("ES_TEST_READ_MODEL")
    if not path:
        return []
    from account_es import AccountProjectionBuilder

    from eventstore.sqlite import SQLiteReadModel

    builder = AccountProjectionBuilder("deposits")
    builder.on_account_opened(lambda event, envelope: None)
    builder.on_money_deposited(lambda event, envelope: None)
    return [(builder.build(), SQLiteReadModel(path))]
