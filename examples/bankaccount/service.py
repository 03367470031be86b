"""The bank's services for a service host: ``eventstore serve examples.bankaccount.service``.

``eventstore serve MODULE --store URL --nats URL`` imports ``MODULE`` and
calls its ``services(store)`` for the server bindings to serve (and its
``projections(store)``, when it has one, for the projections to run from the
bus). The handlers are the ones the in-process story uses: the same code
serves in a notebook and over NATS.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE / "generated") not in sys.path:
    sys.path.insert(0, str(HERE / "generated"))

from account_es import (  # noqa: E402
    AccountCommandServiceServer,
    AccountQueryServiceServer,
    AccountRepository,
)

from eventstore import EveryNEvents  # noqa: E402
from eventstore.core.ports import EventStore  # noqa: E402
from eventstore.core.routing import ServiceBinding  # noqa: E402
from examples.bankaccount.handlers import (  # noqa: E402
    AccountApplier,
    AccountCommands,
    AccountQueries,
)


def services(store: EventStore) -> list[ServiceBinding]:
    """The bank's command and query services on ``store``."""
    repository = AccountRepository(store, AccountApplier(), EveryNEvents(3))
    return [
        AccountCommandServiceServer(AccountCommands(repository)),
        AccountQueryServiceServer(AccountQueries(repository)),
    ]
