# The cells below are notebook text; their lines are as long as a notebook reads well.
# ruff: noqa: E501
"""Write the tutorial notebooks in notebooks/ (and execute them, with --execute).

    .venv/bin/python scripts/build_notebooks.py              # write the .ipynb files, no outputs
    .venv/bin/python scripts/build_notebooks.py --execute    # write and run them, saving outputs
    .venv/bin/python scripts/build_notebooks.py --execute 03 # only notebooks whose name has "03"

The .ipynb files are what ships; this script is how they are kept tidy
(one source of truth for the cells, consistent metadata, outputs made by a
fresh kernel). The cells below are the tutorials: edit them here, run the
script, then check stability with nbval:

    .venv/bin/pytest --nbval --nbval-current-env \
        --nbval-sanitize-with notebooks/sanitize.cfg notebooks/
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
IGNORE_OUTPUT = "nbval-ignore-output"

Cell = NotebookNode


def md(text: str) -> Cell:
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str, *tags: str) -> Cell:
    cell = nbformat.v4.new_code_cell(textwrap.dedent(text).strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


SETUP = code(
    """
    %load_ext eventstore.notebook
    from eventstore.notebook.charts import use_offline_renderer

    use_offline_renderer("png")  # charts are drawn in the kernel: no CDN, same picture every run
    """
)

SETUP_NOTE = md(
    """
    The first cell loads the extension (the **Event Sourcing (Python)** kernel
    does this for you) and asks altair to draw charts as pictures rendered in
    the kernel, so they show without a network connection.
    """
)

BANK_PROTO = """
%%es_generate --name bank
syntax = "proto3";
package account.v1;

import "eventsourcing/options.proto";

// A bank account holding a balance in cents.
message AccountState {
  option (eventsourcing.aggregate_root) = {
    id_field: "account_id"
    type_name: "Account"
  };
  string account_id = 1;
  string owner = 2;
  int64 balance = 3;
  AccountStatus status = 4;
}

enum AccountStatus {
  ACCOUNT_STATUS_UNSPECIFIED = 0;
  ACCOUNT_STATUS_OPEN = 1;
  ACCOUNT_STATUS_CLOSED = 2;
}

// The account was opened with an initial deposit.
message AccountOpenedEvent {
  option (eventsourcing.event).aggregate_name = "Account";
  string owner = 1;
  int64 initial_deposit = 2;
}

// Money was paid in.
message MoneyDepositedEvent {
  option (eventsourcing.event).aggregate_name = "Account";
  int64 amount = 1;
}

// Money was paid out.
message MoneyWithdrawnEvent {
  option (eventsourcing.event).aggregate_name = "Account";
  int64 amount = 1;
}

message OpenAccountCommand {
  string account_id = 1;
  string owner = 2;
  int64 initial_deposit = 3;
}

message OpenAccountResponse {
  string account_id = 1;
  int64 version = 2;
}

message DepositCommand {
  string account_id = 1;
  int64 amount = 2;
}

message WithdrawCommand {
  string account_id = 1;
  int64 amount = 2;
}

// The balance and version after a deposit or a withdrawal.
message BalanceResponse {
  int64 balance = 1;
  int64 version = 2;
}

// Changes accounts.
service AccountCommandService {
  option (eventsourcing.service) = {aggregate_name: "Account"};
  // Open a new account; fails with ACCOUNT_EXISTS if the id is taken.
  rpc OpenAccount(OpenAccountCommand) returns (OpenAccountResponse);
  // Pay money in.
  rpc Deposit(DepositCommand) returns (BalanceResponse);
  // Pay money out; fails with INSUFFICIENT_FUNDS when the balance is too low.
  rpc Withdraw(WithdrawCommand) returns (BalanceResponse);
}
"""

BANK_APPLIER = """
class AccountApplier:
    \"\"\"How each event changes an account: the only place its state is written.\"\"\"

    def apply_account_opened_event(self, agg, event):
        agg.owner = event.owner
        agg.balance = event.initial_deposit
        agg.status = AccountStatus.ACCOUNT_STATUS_OPEN

    def apply_money_deposited_event(self, agg, event):
        agg.balance += event.amount

    def apply_money_withdrawn_event(self, agg, event):
        agg.balance -= event.amount
"""

OPEN_ACCOUNT = """
from eventstore import AppError


def open_account(repo, cmd, ctx):
    def decide(agg):
        if agg.version:
            raise AppError("ACCOUNT_EXISTS", f"account {agg.id!r} already exists",
                           "Choose another account id.")
        agg.apply_change(AccountOpenedEvent(owner=cmd.owner, initial_deposit=cmd.initial_deposit))

    result = repo.retry_on_conflict(cmd.account_id, decide, command_id=ctx.command_id)
    return OpenAccountResponse(account_id=cmd.account_id, version=result.version)
"""

MOVE_MONEY = """
def deposit(repo, cmd, ctx):
    def decide(agg):
        must_exist(agg)
        if cmd.amount <= 0:
            raise AppError("INVALID_AMOUNT", f"cannot deposit {cmd.amount} cents",
                           "Deposit a positive amount.")
        agg.apply_change(MoneyDepositedEvent(amount=cmd.amount))

    return balance_after(repo, cmd.account_id, decide, ctx)


def withdraw(repo, cmd, ctx):
    def decide(agg):
        must_exist(agg)
        if cmd.amount > agg.balance:
            raise AppError("INSUFFICIENT_FUNDS",
                           f"account {agg.id!r} holds {agg.balance} cents, cannot withdraw {cmd.amount}",
                           "Withdraw less, or deposit first.", {"balance": str(agg.balance)})
        agg.apply_change(MoneyWithdrawnEvent(amount=cmd.amount))

    return balance_after(repo, cmd.account_id, decide, ctx)


def must_exist(agg):
    if agg.version == 0:
        raise AppError("ACCOUNT_NOT_FOUND", f"account {agg.id!r} does not exist", "Open it first.")


def balance_after(repo, account_id, decide, ctx):
    result = repo.retry_on_conflict(account_id, decide, command_id=ctx.command_id)
    agg = repo.load(account_id, at_version=result.version)   # the same answer if it is retried
    return BalanceResponse(balance=agg.balance, version=agg.version)
"""

COMMAND_HANDLER = """
class AccountCommands:
    \"\"\"Serves AccountCommandService: each RPC is one of the functions above.\"\"\"

    def __init__(self, repo):
        self.repo = repo

    def open_account(self, cmd, ctx):
        return open_account(self.repo, cmd, ctx)

    def deposit(self, cmd, ctx):
        return deposit(self.repo, cmd, ctx)

    def withdraw(self, cmd, ctx):
        return withdraw(self.repo, cmd, ctx)
"""


# -- 01 -----------------------------------------------------------------------------------------
def quickstart() -> list[Cell]:
    return [
        md(
            """
            # 01 · Quickstart: from a proto to a stream of events

            **Why event sourcing?** Most applications store only the *current*
            state: a balance of 120 says nothing about how it got there. An
            event-sourced application stores what *happened* instead (opened
            with 100, deposited 50, withdrew 30) and computes the state by
            replaying those events. You get an audit log for free, you can ask
            what the state was last Tuesday, and you can build new views of the
            past long after it happened.

            **What you will do here**, in six short steps (one section each):

            1. describe a bank account in a `.proto` cell (state, events, commands)
               and let `%%es_generate` turn it into Python classes;
            2. write how each event changes the state;
            3. open a store and save an account through a repository;
            4. send commands through a generated client;
            5. look at the log as a table, a timeline, and the state at a version;
            6. drive it all from widgets: a command form and a live event log.
            """
        ),
        SETUP,
        SETUP_NOTE,
        md(
            """
            ## 1. The domain, in protobuf

            Everything the system stores or sends is a protobuf message, so the
            schema is written once and is language neutral. Three options from
            `eventsourcing/options.proto` tell the generator what is what:

            - `aggregate_root` marks the **state** of an aggregate (one bank account);
            - `event` marks an **event** of that aggregate: a fact, named in the past tense;
            - `service` binds a set of **commands** (requests to change something) to it.

            The magic on the first line compiles the cell with `protoc` and
            generates the Python module named `bank`.
            """
        ),
        code(BANK_PROTO),
        md(
            """
            Every message is now a class in the notebook (`AccountOpenedEvent`,
            `DepositCommand`, ...), and so is what was generated from them: the
            aggregate, its repository, a typed client and a server binding for the
            service. The module itself is `bank`:
            """
        ),
        code(
            """
            [name for name in dir(bank) if name.startswith("Account") and not name.endswith("Event")]
            """
        ),
        md(
            """
            ## 2. How events change the state

            The generated `AccountAggregate` keeps its state in an `AccountState`
            message and knows *which* method to call for each event type. *What*
            an event does to the state is yours to write, in an **applier**: one
            method per event, named after it. Appliers only assign: they never
            check or refuse anything, because they run again on every load and an
            event that was stored has already happened.
            """
        ),
        code(BANK_APPLIER),
        md(
            """
            ## 3. A store and a repository

            `%es_store` opens the notebook's event store (in memory here; give it a
            path for a SQLite file) and binds it to `store`. A **repository**
            loads an aggregate by replaying its events and saves the new ones.
            """
        ),
        code("%es_store"),
        code(
            """
            repo = AccountRepository(store, AccountApplier())

            account = AccountAggregate("acc-1", repo.applier)
            account.apply_change(AccountOpenedEvent(owner="Ada", initial_deposit=100))
            account.apply_change(MoneyDepositedEvent(amount=50))
            print(f"balance {account.balance}, version {account.version}, "
                  f"{len(account.uncommitted_events)} events not saved yet")
            """
        ),
        md(
            """
            `apply_change` applies the event at once (the balance is already 150)
            and keeps it until you save. Saving appends both events to the store
            in one transaction, at versions 1 and 2:
            """
        ),
        code(
            """
            result = repo.save(account)
            [(e.version, e.event_type) for e in result.events]
            """
        ),
        code(
            """
            again = repo.load("acc-1")        # a fresh object, rebuilt from the two events
            again.owner, again.balance, again.version
            """
        ),
        md(
            """
            ## 4. Commands through a generated client

            In an application the state is not changed by calling `apply_change`
            from anywhere: a **command** arrives (from a user, another service),
            a handler checks it against the current state and either raises
            events or refuses with an `AppError` (a business error with a code,
            a message and what to do about it).

            We write the decisions as plain functions first, one per command.
            Each one hands a small `decide(agg)` function to the repository's
            `retry_on_conflict`, which loads the account, calls it, and saves
            what it raised under the command's id (notebook 02 shows why both
            matter).

            **Opening an account** is refused when the id is taken:
            """
        ),
        code(OPEN_ACCOUNT),
        md(
            """
            **Deposits and withdrawals** follow the same pattern: check, raise
            one event, and reply with the balance as of that event. A withdrawal
            larger than the balance is refused with an `AppError` that says what
            to do about it.
            """
        ),
        code(MOVE_MONEY),
        md(
            """
            The generated server expects one object with a method per RPC of
            `AccountCommandService` (the generated `AccountCommandServiceHandler`
            protocol). Ours just hands each command to its function:
            """
        ),
        code(COMMAND_HANDLER),
        md(
            """
            The generated **server binding** routes each method of the service to
            the handler; a **transport** carries requests to it. Here that is
            `InProcessTransport` (same process, no network); the same client works
            over NATS or HTTP later. The generated **client** has one `async`
            method per RPC, so in a notebook you `await` it.
            """
        ),
        code(
            """
            from eventstore import InProcessTransport

            transport = InProcessTransport(AccountCommandServiceServer(AccountCommands(repo)))
            client = AccountClient(transport)
            """
        ),
        code(
            """
            await client.open_account(
                OpenAccountCommand(account_id="acc-2", owner="Alan", initial_deposit=5_000)
            )
            """
        ),
        code(
            """
            for amount in (2_500, 1_200, 800):
                reply = await client.deposit(DepositCommand(account_id="acc-2", amount=amount))
                print(f"deposited {amount:>5}: balance {reply.balance:>6} at version {reply.version}")

            reply = await client.withdraw(WithdrawCommand(account_id="acc-2", amount=4_000))
            print(f"withdrew   4000: balance {reply.balance:>6} at version {reply.version}")
            """
        ),
        md(
            """
            A command the rules refuse comes back as an `AppError`, raised by the
            client. Nothing is stored.
            """
        ),
        code(
            """
            try:
                await client.withdraw(WithdrawCommand(account_id="acc-2", amount=1_000_000))
            except AppError as error:
                print(error.code, "|", error.message, "|", error.solution)
            """
        ),
        md(
            """
            ## 5. The log

            `%es_events` shows the store's events as a DataFrame. `--brief` keeps
            the columns to read first: the global `position`, the stream
            (`aggregate_id`, `version`), the type, and the payload decoded (the
            magic knows the classes `%%es_generate` made).
            """
        ),
        code("%es_events --brief"),
        md(
            """
            Without `--brief` you get every column. Filtered to one account's
            deposits: each event also has a `timestamp`, its own `event_id`, and
            who caused it (`causation_id` is the id of the command that stored
            it; the other metadata columns are empty here).
            """
        ),
        code("%es_events acc-2 --type MoneyDepositedEvent"),
        md(
            """
            The same log as a picture: one row per account, one dot per event,
            coloured by type. Here every event happened within a second, so time
            runs in seconds. The two events `acc-1` saved in one transaction share
            a timestamp, so their dots are stacked instead of hiding each other.
            """
        ),
        code(
            """
            from eventstore.notebook import charts, frames

            log = frames.store_events_frame(store, types=repo)
            charts.event_timeline(log)
            """
        ),
        md(
            """
            And the state of one account at any version, through the repository
            (which replays the events up to that version):
            """
        ),
        code("%es_state acc-2 --repo repo"),
        code("%es_state acc-2 --repo repo --at 2"),
        md(
            """
            ## 6. Widgets: a command form and a live event log

            `CommandForm` builds a form from any command message (one input per
            field, by type) and sends it with the function you give it: here the
            client's `deposit`. `EventLog` shows the newest events and updates
            itself after every commit to the store.
            """
        ),
        code(
            """
            from eventstore.notebook.widgets import CommandForm, EventLog

            event_log = EventLog(store, repo, max_rows=5)
            event_log
            """
        ),
        code(
            """
            form = CommandForm(DepositCommand, client.deposit, title="Deposit")
            form.input("account_id").value = "acc-2"
            form.input("amount").value = 700
            form
            """
        ),
        md(
            """
            The event log's title says what it shows: the last 5 of the store's
            events, and the position of the newest.

            Press **Send** in the form above (with a live kernel), or press it
            from code: the reply, or the `AppError`, shows in the form's output,
            and the event log above gains a row.
            """
        ),
        code(
            """
            form.click()
            await form.wait()
            print(form.output_text())
            newest = event_log.rows()[0]
            print(f"newest row of the event log: version {newest['version']} {newest['event']}"
                  f"({newest['payload']})")
            """
        ),
        md(
            """
            ## What you learned

            - State is the result of replaying events; events are facts and are never changed.
            - A proto cell is the whole domain schema; `%%es_generate` makes the classes.
            - Appliers change state; command handlers decide and raise events or `AppError`s.
            - Clients send commands through a transport; the store records who caused what.

            **Next:** [02 · Commands, idempotency and optimistic concurrency](02_commands_idempotency_concurrency.ipynb).
            """
        ),
    ]


# -- 02 -----------------------------------------------------------------------------------------
APPLIER_02 = """
class AccountApplier:
    def apply_account_opened_event(self, agg, event):
        agg.owner, agg.balance = event.owner, event.initial_deposit
        agg.status = bank.AccountStatus.ACCOUNT_STATUS_OPEN

    def apply_money_deposited_event(self, agg, event):
        agg.balance += event.amount

    def apply_money_withdrawn_event(self, agg, event):
        agg.balance -= event.amount

    def apply_account_closed_event(self, agg, event):
        agg.status = bank.AccountStatus.ACCOUNT_STATUS_CLOSED
"""

HANDLER_02 = """
from eventstore import AppError


class AccountCommands:
    def __init__(self, repo):
        self.repo = repo

    def open_account(self, cmd, ctx):
        event = bank.AccountOpenedEvent(owner=cmd.owner, initial_deposit=cmd.initial_deposit)
        result = self._save(cmd.account_id, event, ctx)
        return bank.OpenAccountResponse(account_id=cmd.account_id, version=result.version)

    def deposit(self, cmd, ctx):
        return self._balance(cmd.account_id, bank.MoneyDepositedEvent(amount=cmd.amount), ctx)

    def withdraw(self, cmd, ctx):
        return self._balance(cmd.account_id, bank.MoneyWithdrawnEvent(amount=cmd.amount), ctx)

    def close_account(self, cmd, ctx):
        raise AppError("NOT_HERE", "this notebook does not close accounts",
                       "See examples/bankaccount for the full handler.")

    def _save(self, account_id, event, ctx):
        def decide(agg):
            agg.apply_change(event)

        return self.repo.retry_on_conflict(account_id, decide, command_id=ctx.command_id)

    def _balance(self, account_id, event, ctx):
        result = self._save(account_id, event, ctx)
        agg = self.repo.load(account_id, at_version=result.version)
        return bank.BalanceResponse(balance=agg.balance, version=agg.version)
"""


def commands() -> list[Cell]:
    return [
        md(
            """
            # 02 · Commands: idempotency and optimistic concurrency

            Two things go wrong with commands in every real system:

            - **The same command arrives twice.** A client times out and retries,
              a message broker redelivers. A deposit must not be paid twice.
            - **Two writers change the same aggregate at once.** Both read
              version 7, both decide, both try to write version 8. One of them
              decided on stale state.

            This notebook shows how the store handles both: **command ids** make
            a command idempotent, and **expected versions** turn a lost update
            into a `ConcurrencyError` that `retry_on_conflict` resolves by
            deciding again on fresh state.
            """
        ),
        SETUP,
        md(
            """
            We use the bank of notebook 01 again. Rather than repeat its proto
            here, we generate the module from the copy kept in the repository,
            `proto/examples/bank/account.proto` (the same account, plus a command
            to close it). `generate_module(paths=...)` is what `%%es_generate`
            does with a cell, for files on disk; the classes are reached through
            the module, as `bank.DepositCommand` and so on.
            """
        ),
        code(
            """
            from pathlib import Path
            from eventstore.codegen import generate_module

            bank = generate_module(paths=[Path("../proto/examples/bank/account.proto")], name="bank")
            sorted(bank.EVENT_TYPES)
            """
        ),
        md("The applier of notebook 01, with one more event:"),
        code(APPLIER_02),
        md(
            """
            And a shorter command handler than notebook 01's (no business rules,
            so that what this notebook is about stands out): every method
            decides inside `retry_on_conflict` and passes on the command's id.
            """
        ),
        code(HANDLER_02),
        code(
            """
            from eventstore import InProcessTransport

            %es_store
            repo = bank.AccountRepository(store, AccountApplier())
            server = bank.AccountCommandServiceServer(AccountCommands(repo))
            client = bank.AccountClient(InProcessTransport(server))

            opening = bank.OpenAccountCommand(account_id="acc-1", owner="Ada", initial_deposit=100)
            await client.open_account(opening)
            """
        ),
        md(
            """
            ## 1. The same command twice is applied once

            Every call of a generated client carries a **command id** (a new one
            unless you pass yours). The handler saves under that id; when the store
            sees an id it already stored, it writes nothing and returns the
            original events. A client that retries after a timeout sends **the
            same id** again:
            """
        ),
        code(
            """
            deposit = bank.DepositCommand(account_id="acc-1", amount=25)
            first = await client.deposit(deposit, command_id="deposit-0001")
            retry = await client.deposit(deposit, command_id="deposit-0001")
            print("first:", first.balance, "at version", first.version)
            print("retry:", retry.balance, "at version", retry.version)
            """
        ),
        md("One deposit in the log, not two:"),
        code("%es_events acc-1"),
        md(
            """
            Underneath, the repository's `save_with_command` returns a
            `CommandResult`; `already_processed` tells a retry from a first run.
            The ids of a command's events are derived from the command id, so a
            retry is recognised even after the store has forgotten the command
            record (it keeps them for a week by default).
            """
        ),
        code(
            """
            from eventstore import deterministic_event_id

            account = repo.load("acc-1")
            account.apply_change(bank.MoneyDepositedEvent(amount=10))
            once = repo.save_with_command(account, "bonus-2026-01")

            account = repo.load("acc-1")                      # the retry decides again...
            account.apply_change(bank.MoneyDepositedEvent(amount=10))
            twice = repo.save_with_command(account, "bonus-2026-01")

            print("first run stored version", once.version, "| already processed:", once.already_processed)
            print("retry stored nothing new  | already processed:", twice.already_processed,
                  "| same events:", once.events == twice.events)
            print("event id derived from the command id:",
                  once.events[0].event_id == deterministic_event_id("bonus-2026-01", "acc-1", 0))
            """
        ),
        md(
            """
            ## 2. Two writers, one version: `ConcurrencyError`

            Every save says which version it started from (the aggregate's
            `stored_version`). The store appends only if the stream is still at
            that version. Two writers load the account at the same version:
            """
        ),
        code(
            """
            from eventstore import ConcurrencyError

            alice = repo.load("acc-1")
            bob = repo.load("acc-1")
            print("both loaded version", alice.version, "with balance", alice.balance)

            alice.apply_change(bank.MoneyWithdrawnEvent(amount=100))
            repo.save(alice)
            print("Alice saved version", alice.version)

            bob.apply_change(bank.MoneyWithdrawnEvent(amount=100))   # decided on a stale balance
            try:
                repo.save(bob)
            except ConcurrencyError as error:
                print(f"Bob: expected version {error.expected}, found {error.actual}")
                print(error)
            """
        ),
        md(
            """
            Bob's withdrawal was decided on a balance that no longer exists; the
            store refused it instead of silently losing Alice's change. The fix
            is always the same: **reload and decide again**. That is what
            `retry_on_conflict(id, decide)` does: load, call `decide`, save; on a
            conflict, back off briefly and start over (5 attempts by default).

            To see it happen, this `decide` function lets another writer sneak in
            a deposit during its first attempt:
            """
        ),
        code(
            """
            attempts = []

            def withdraw_30(agg):
                attempts.append((agg.version, agg.balance))
                if len(attempts) == 1:            # meanwhile, someone else deposits
                    other = repo.load("acc-1")
                    other.apply_change(bank.MoneyDepositedEvent(amount=5))
                    repo.save(other)
                if agg.balance < 30:
                    raise AppError("INSUFFICIENT_FUNDS", f"balance {agg.balance} is below 30")
                agg.apply_change(bank.MoneyWithdrawnEvent(amount=30))

            result = repo.retry_on_conflict("acc-1", withdraw_30)
            for number, (version, balance) in enumerate(attempts, 1):
                print(f"attempt {number}: decided on version {version}, balance {balance}")
            print("stored at version", result.version, "| balance now", repo.load("acc-1").balance)
            """
        ),
        md(
            """
            ## 3. Many writers at once

            Four threads each make 25 deposits of 1 cent to the same account, as
            fast as they can, through `retry_on_conflict`. Conflicts happen (how
            many depends on timing), every one is retried, and no deposit is lost.
            The store is a SQLite file this time: threads share it the way
            processes would.
            """
        ),
        code(
            """
            import tempfile
            from concurrent.futures import ThreadPoolExecutor
            from eventstore import SQLiteEventStore

            workdir = tempfile.TemporaryDirectory()          # removed at the end of the notebook
            shared = SQLiteEventStore(Path(workdir.name, "bank.db"))
            shared_repo = bank.AccountRepository(shared, AccountApplier())
            opening = shared_repo.factory("acc-9")
            opening.apply_change(bank.AccountOpenedEvent(owner="Grace", initial_deposit=0))
            shared_repo.save(opening)

            decisions = []

            def deposit_cent(agg):
                decisions.append(agg.version)          # called again after each conflict
                agg.apply_change(bank.MoneyDepositedEvent(amount=1))

            def writer(_):
                for _ in range(25):
                    shared_repo.retry_on_conflict("acc-9", deposit_cent, attempts=50, backoff=0.001)

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(writer, range(4)))

            final = shared_repo.load("acc-9")
            print(f"balance {final.balance} cents after {final.version - 1} deposits")
            """
        ),
        code(
            """
            print(f"{len(decisions)} decisions for 100 deposits: "
                  f"{len(decisions) - 100} conflicts were caught and decided again")
            """,
            IGNORE_OUTPUT,
        ),
        md(
            """
            The output of that last cell changes from run to run (it depends on
            how the threads interleave), so it is the one cell whose output the
            notebook tests ignore. The balance does not change: it is always 100.

            The events of the burst, counted per 10 milliseconds:
            """
        ),
        code(
            """
            from eventstore.notebook import charts, frames

            charts.event_rate(frames.stream_frame(shared, "acc-9", shared_repo), bucket="10ms")
            """
        ),
        md("The shared store's file is no longer needed: close it and remove its folder."),
        code(
            """
            shared.close()
            workdir.cleanup()
            """
        ),
        md(
            """
            ## What you learned

            - Send every command with an id and pass `ctx.command_id` to the
              repository: a retry is then applied once, even after a crash.
            - A save names the version it started from; a stale writer gets a
              `ConcurrencyError` instead of overwriting someone else's change.
            - `retry_on_conflict` reloads and decides again, so business rules
              always see current state.

            **Next:** [03 · Projections and read models](03_projections_read_models.ipynb).
            """
        ),
    ]


# -- 03 -----------------------------------------------------------------------------------------
def projections() -> list[Cell]:
    return [
        md(
            """
            # 03 · Projections and read models

            An aggregate answers one question well: *what is the state of
            account acc-004?* It cannot answer *which ten accounts hold the most
            money?* without loading every account. That is what **read models**
            are for: tables shaped for the questions you ask, computed from the
            log by **projections**.

            A projection reads the global log in order and remembers how far it
            got (its **checkpoint**). It can be added late, rebuilt from scratch,
            stopped by a bug and resumed: the log is the truth, read models are
            disposable.

            This notebook uses the **bank** sample dataset: 259 events of twelve
            accounts over two months.
            """
        ),
        SETUP,
        md(
            """
            ## 1. Load a dataset

            `eventstore.datasets.load` generates the dataset's module from its
            proto (shipped beside its events) and appends the events to a store,
            here the notebook's store. In a notebook it also tells `%es_events`
            about the dataset's classes, so the payloads show decoded.
            """
        ),
        code(
            """
            import eventstore.datasets

            %es_store
            store, bank, summary = eventstore.datasets.load("bank", store)
            print(summary)
            """
        ),
        code("%es_events --last 5"),
        md(
            """
            The store stamped every event with the moment it was loaded; the
            dataset keeps the time of its story (two months) in each event's
            metadata, under `recorded_at`. `time_from="recorded_at"` puts that
            time in the frame's `timestamp` column, and the story shows:
            accounts opened in the first days, then salaries, rent and card
            payments.
            """
        ),
        code(
            """
            import pandas as pd
            from eventstore.notebook import charts, frames

            story = frames.store_events_frame(store, types=bank.EVENT_TYPES, time_from="recorded_at")
            charts.event_timeline(story)
            """
        ),
        md("Counted per week (weeks start on Monday), by event type:"),
        code('charts.event_rate(story, bucket="7D")'),
        md(
            """
            ## 2. A projection into a SQLite read model

            The generated `AccountProjectionBuilder` has one `on_<event>` method per
            event type, so each handler receives a decoded, typed message. Each
            handler also gets `ctx`, whose `connection` is the read model's open
            transaction: the rows it writes and the checkpoint are committed
            **together**, so every event is applied exactly once, even after a
            crash. `on_reset` creates (or empties) the table, before the first
            event and before every rebuild.
            """
        ),
        code(
            """
            balances = bank.AccountProjectionBuilder("balances")

            @balances.on_reset
            def _(ctx):
                ctx.connection.execute(
                    "CREATE TABLE IF NOT EXISTS balances "
                    "(account_id TEXT PRIMARY KEY, owner TEXT, balance INTEGER, open INTEGER)")
                ctx.connection.execute("DELETE FROM balances")

            @balances.on_account_opened
            def _(event, envelope, ctx):
                ctx.connection.execute("INSERT INTO balances VALUES (?, ?, ?, 1)",
                                       (envelope.aggregate_id, event.owner, event.initial_deposit))

            @balances.on_money_deposited
            def _(event, envelope, ctx):
                ctx.connection.execute("UPDATE balances SET balance = balance + ? WHERE account_id = ?",
                                       (event.amount, envelope.aggregate_id))

            @balances.on_money_withdrawn
            def _(event, envelope, ctx):
                ctx.connection.execute("UPDATE balances SET balance = balance - ? WHERE account_id = ?",
                                       (event.amount, envelope.aggregate_id))

            @balances.on_account_closed
            def _(event, envelope, ctx):
                ctx.connection.execute("UPDATE balances SET open = 0 WHERE account_id = ?",
                                       (envelope.aggregate_id,))
            """
        ),
        md(
            """
            A `ProjectionManager` feeds registered projections from the store.
            `SQLiteReadModel(store)` keeps the read model in the store's own file
            (it could be another file, or another database).
            """
        ),
        code(
            """
            from eventstore import ProjectionManager, SQLiteReadModel

            read_model = SQLiteReadModel(store)
            manager = ProjectionManager(store)
            manager.register(balances.build(), read_model=read_model)
            manager.catch_up()
            """
        ),
        code(
            """
            def richest(n=5):
                rows = read_model.query(
                    "SELECT account_id, owner, balance, open FROM balances "
                    "ORDER BY balance DESC LIMIT ?", (n,))
                return pd.DataFrame(rows, columns=["account_id", "owner", "balance", "open"])

            richest()
            """
        ),
        md(
            """
            ## 3. Checkpoints and lag

            Each projection's checkpoint is the position of the last event it
            handled. The **lag** is how far the head of the log is ahead of it.
            """
        ),
        code(
            """
            from eventstore.notebook.frames import checkpoints_frame

            checkpoints_frame(store)
            """
        ),
        md(
            """
            New events arrive: the bank keeps working. To write them we need the
            aggregate, so here is an applier for the dataset's accounts (see
            notebook 01):
            """
        ),
        code(
            """
            class AccountApplier:
                def apply_account_opened_event(self, agg, event):
                    agg.owner, agg.balance = event.owner, event.initial_deposit
                    agg.status = bank.AccountStatus.ACCOUNT_STATUS_OPEN

                def apply_money_deposited_event(self, agg, event):
                    agg.balance += event.amount

                def apply_money_withdrawn_event(self, agg, event):
                    agg.balance -= event.amount

                def apply_account_closed_event(self, agg, event):
                    agg.status = bank.AccountStatus.ACCOUNT_STATUS_CLOSED

            repo = bank.AccountRepository(store, AccountApplier())

            def pay(account_id, amount, reference="transfer"):
                account = repo.load(account_id)
                account.apply_change(bank.MoneyDepositedEvent(amount=amount, reference=reference))
                repo.save(account)

            for account_id in ("acc-001", "acc-002", "acc-003"):
                pay(account_id, 1_000_000, "lottery")

            info = manager.status("balances")
            print(f"{info.name}: {info.status}, checkpoint {info.checkpoint}, "
                  f"head {info.head_position}, lag {info.lag_positions}")
            """
        ),
        code(
            """
            manager.catch_up()
            richest(3)
            """
        ),
        md(
            """
            ## 4. When a handler fails

            Handlers are code, and code has bugs. This second projection keeps
            the large withdrawals in a Python list. Its author assumed amounts
            always fit in a small range, and wrote a check that raises.
            """
        ),
        code(
            """
            from eventstore import CheckpointedReadModel

            class LargeWithdrawals:
                name = "large_withdrawals"
                event_types = [bank.MoneyWithdrawnEvent]
                limit = 50_000              # the bug: a sanity check that is wrong

                def __init__(self):
                    self.rows = []

                def reset(self, ctx):
                    self.rows.clear()

                def handle(self, envelope, ctx):
                    event = bank.MoneyWithdrawnEvent.FromString(envelope.data)
                    if event.amount > self.limit:
                        raise ValueError(f"withdrawal of {event.amount} cents is implausible")
                    if event.amount >= 10_000:
                        self.rows.append((envelope.position, envelope.aggregate_id, event.amount))

            large = LargeWithdrawals()
            manager.register(large, read_model=CheckpointedReadModel(store))  # checkpoint in the store
            manager.catch_up()
            """
        ),
        code(
            """
            failed = manager.status("large_withdrawals")
            error = failed.last_error
            print(failed.status, "at checkpoint", failed.checkpoint, "| rows so far:", len(large.rows))
            print(f"failed at position {error.position} ({error.aggregate_id}): "
                  f"{error.error_type}: {error.message}")
            """
        ),
        md(
            """
            The checkpoint is the position of the last event this projection
            *handled*, not simply "the failing position minus one". It reads
            only withdrawals, so any events between its checkpoint and the
            failing one are of types it skips:
            """
        ),
        code(
            """
            withdrawal = bank.MoneyWithdrawnEvent.DESCRIPTOR.full_name
            between = store.read_all(failed.checkpoint, limit=error.position - failed.checkpoint)
            for event in between:
                reads = "reads it" if event.event_type == withdrawal else "skips it"
                print(f"position {event.position}: {event.event_type.rsplit('.', 1)[-1]:<20} {reads}")
            """
        ),
        md(
            """
            The manager logged the failure with everything needed to find it
            (the red text above); `status()` has the same facts as attributes,
            and `last_error.traceback` the handler's traceback.

            The failing projection stopped **at** the failing event: nothing it
            reads lies between its checkpoint and that event, so nothing was
            skipped, and it will not move past the event until the event is
            handled. The other projection was not affected. Fix the handler, then
            `resume` retries that event and carries on:
            """
        ),
        code(
            """
            LargeWithdrawals.limit = 10_000_000   # the fix
            manager.resume("large_withdrawals")
            manager.catch_up()
            print(manager.status("large_withdrawals").status, "| rows:", len(large.rows))
            """
        ),
        md(
            """
            `checkpoints_frame` reads raw checkpoints. For a projection that
            reads only some event types the manager knows better: its status
            counts it as caught up when nothing *it reads* is pending.
            """
        ),
        code(
            """
            pd.DataFrame([(s.name, str(s.status), s.checkpoint, s.head_position, s.lag_positions,
                           s.events_handled, s.errors) for s in manager.statuses()],
                         columns=["projection", "status", "checkpoint", "head", "lag",
                                  "handled", "errors"])
            """
        ),
        md(
            """
            ## 5. Watching projections

            The `ProjectionMonitor` widget shows each projection's status,
            checkpoint, lag and last error, with a lag chart. It refreshes on
            its own while the kernel runs (`monitor.start()`); here we take
            readings by hand, to tell a story: the `balances` projection is
            paused (as if its database were down for maintenance) while the
            bank goes on, then resumed.
            """
        ),
        code(
            """
            from eventstore.notebook.widgets import ProjectionMonitor

            monitor = ProjectionMonitor(manager)
            monitor
            """
        ),
        code(
            """
            import itertools

            manager.pause("balances")
            accounts = itertools.cycle(["acc-001", "acc-002", "acc-003", "acc-005"])
            for burst in range(6):
                for _ in range(15):
                    pay(next(accounts), 100)
                manager.catch_up("large_withdrawals")
                monitor.refresh()

            manager.resume("balances")
            manager.catch_up("balances")
            monitor.refresh()
            for s in manager.statuses():
                print(f"{s.name:<18} {s.status:<8} lag {s.lag_positions}")
            """
        ),
        md(
            """
            Every refresh took a reading of each projection; the chart draws them.
            While `balances` was paused its lag grew with every burst, and fell to
            zero when it caught up. `large_withdrawals` only reads withdrawals, so
            deposits never put it behind.
            """
        ),
        code(
            """
            charts.projection_lag(list(monitor.samples))
            """
        ),
        md(
            """
            ## 6. Running live, and rebuilding

            In an application, `manager.run()` keeps every projection fed: each
            commit in this process wakes it at once. In a notebook, start it as
            a task and keep working; `monitor.start()` refreshes the widget above
            while it runs.
            """
        ),
        code(
            """
            import asyncio

            runner = asyncio.create_task(manager.run())
            monitor.start()
            for _ in range(20):
                pay("acc-010", 250)
                await asyncio.sleep(0.01)
            while any(s.lag_positions for s in manager.statuses()):
                await asyncio.sleep(0.02)
            manager.stop()
            await runner
            monitor.stop()
            [(s.name, str(s.status), s.lag_positions) for s in manager.statuses()]
            """
        ),
        md(
            """
            A read model is disposable: `rebuild` resets it and replays the whole
            log. Do it after changing a projection's code, or to build a new
            read model over old events. The result is the same table:
            """
        ),
        code(
            """
            info = manager.rebuild("balances", show_progress=False)
            print(info.status, "at checkpoint", info.checkpoint)
            richest(3)
            """
        ),
        md(
            """
            ## What you learned

            - Projections turn the log into read models shaped for queries; each
              keeps its own checkpoint, so it can start late, pause, or be rebuilt.
            - With `SQLiteReadModel`, rows and checkpoint commit in one
              transaction: exactly once, even after a crash.
            - A failing handler stops its projection *at* the failing event; fix
              it and `resume`. The others go on.
            - Lag is the distance from the head of the log; the monitor shows it.

            **Next:** [04 · Snapshots and time travel](04_snapshots_time_travel.ipynb).
            """
        ),
    ]


# -- 04 -----------------------------------------------------------------------------------------
SMALL_BANK_PROTO = """
%%es_generate --name bank
syntax = "proto3";
package account.v1;

import "eventsourcing/options.proto";

message AccountState {
  option (eventsourcing.aggregate_root) = {id_field: "account_id" type_name: "Account"};
  string account_id = 1;
  string owner = 2;
  int64 balance = 3;
  int32 transactions = 4;
}

message AccountOpenedEvent {
  option (eventsourcing.event).aggregate_name = "Account";
  string owner = 1;
  int64 initial_deposit = 2;
}

message MoneyDepositedEvent {
  option (eventsourcing.event).aggregate_name = "Account";
  int64 amount = 1;
}

message MoneyWithdrawnEvent {
  option (eventsourcing.event).aggregate_name = "Account";
  int64 amount = 1;
}
"""

SMALL_BANK_APPLIER = """
class AccountApplier:
    def apply_account_opened_event(self, agg, event):
        agg.owner, agg.balance = event.owner, event.initial_deposit

    def apply_money_deposited_event(self, agg, event):
        agg.balance += event.amount
        agg.transactions += 1

    def apply_money_withdrawn_event(self, agg, event):
        agg.balance -= event.amount
        agg.transactions += 1
"""


def snapshots() -> list[Cell]:
    return [
        md(
            """
            # 04 · Snapshots and time travel

            Loading an aggregate replays all of its events. For an account with
            twenty events that is nothing; for a stream of a hundred thousand it
            is not. A **snapshot** stores the state at some version, so a load
            starts there and replays only the events after it.

            Snapshots here are **versions, not replacements**: each one is kept
            under its version, so `load(id, at_version=v)` starts from the
            nearest snapshot at or below `v`. The same mechanism gives you
            **time travel**: the state of any aggregate at any past version.
            """
        ),
        SETUP,
        code(SMALL_BANK_PROTO),
        code(SMALL_BANK_APPLIER),
        md(
            """
            ## 1. A snapshot strategy

            A repository takes a strategy that decides, after each save, whether
            to snapshot. `EveryNEvents(5)` takes one whenever five events were
            stored since the last. The store is a SQLite file that also holds the
            snapshots.
            """
        ),
        code(
            """
            import tempfile
            from eventstore import EveryNEvents

            workdir = tempfile.TemporaryDirectory()     # removed at the end of the notebook
            %es_store {workdir.name}/bank.db
            repo = AccountRepository(store, AccountApplier(), EveryNEvents(5))
            """
        ),
        md("Twenty-three commands on one account, one event each:"),
        code(
            """
            account = repo.factory("acc-1")
            account.apply_change(AccountOpenedEvent(owner="Ada", initial_deposit=1_000))
            repo.save(account)

            amounts = [250, -100, 400, -300, 1_000, -50, 75, -500, 120, 600, -900,
                       40, 300, -200, 80, -60, 700, -1_000, 90, 150, -45, 500]
            for amount in amounts:
                account = repo.load("acc-1")
                event = (MoneyDepositedEvent(amount=amount) if amount > 0
                         else MoneyWithdrawnEvent(amount=-amount))
                account.apply_change(event)
                repo.save(account)

            print(f"version {account.version}, balance {account.balance}, "
                  f"loaded from the snapshot at version {account.snapshot_version}")
            """
        ),
        md(
            """
            ## 2. Several snapshots, one per strategy hit

            Every snapshot is kept, with the `schema_key` of the state it holds
            (notebook 06 shows why that matters):
            """
        ),
        code(
            """
            from eventstore.notebook import charts, frames

            frames.snapshots_frame(store.list_snapshots("acc-1"), AccountState)
            """
        ),
        code(
            """
            stats = store.snapshot_stats()
            print(f"{stats.count} snapshots of {stats.aggregates} aggregate, "
                  f"{stats.average_bytes:.0f} bytes on average")
            """
        ),
        md(
            """
            On the stream: each tick is an event, each triangle a snapshot.
            """
        ),
        code(
            """
            stream = frames.stream_frame(store, "acc-1", repo)
            charts.snapshot_positions(stream, frames.snapshots_frame(store.list_snapshots("acc-1")))
            """
        ),
        md(
            """
            ## 3. Loading at a version

            `load(id, at_version=12)` finds the snapshot at version 10, restores
            it, and replays events 11 and 12:
            """
        ),
        code(
            """
            past = repo.load("acc-1", at_version=12)
            replayed = store.load_stream("acc-1", after_version=past.snapshot_version, up_to_version=12)
            print(f"balance at version 12: {past.balance} "
                  f"(from the snapshot at version {past.snapshot_version}, "
                  f"then {len(replayed)} events replayed)")
            """
        ),
        md("Below the first snapshot, the load replays from the first event:"),
        code("%es_state acc-1 --repo repo --at 3"),
        code("%es_state acc-1 --repo repo --at 17"),
        md(
            """
            ## 4. Time travel

            The `TimeTravel` widget puts a slider over the versions. Each position
            loads the aggregate at that version (nearest snapshot, then replay)
            and shows the state, the event that made this version and what it
            changed; the strip marks the versions that have a snapshot.
            """
        ),
        code(
            """
            from eventstore.notebook.widgets import TimeTravel

            travel = TimeTravel(repo, "acc-1", version=12)
            travel
            """
        ),
        md("Moving the slider from code does what dragging it does:"),
        code(
            """
            travel.slider.value = 9
            view = travel.view
            print(f"version {view.version}: {view.event_type.rsplit('.', 1)[-1]} {view.event}")
            for change in view.changes:
                print(f"  {change.path}: {change.before} -> {change.after}")
            print("loaded from the snapshot at version", view.snapshot_version)
            """
        ),
        md(
            """
            ## 5. Housekeeping

            Old snapshots cost space and are rarely needed. `keep_last_snapshots`
            keeps the newest few (time travel below the oldest kept one simply
            replays more events); `delete_snapshots_older_than` drops those
            below a version. Neither touches the events.
            """
        ),
        code(
            """
            removed = store.keep_last_snapshots("acc-1", 2)
            print(f"removed {removed}; kept versions {[s.version for s in store.list_snapshots('acc-1')]}")
            print("balance at version 12 is still", repo.load("acc-1", at_version=12).balance)
            """
        ),
        md(
            """
            ## What you learned

            - A snapshot is the state at a version; loads start from the nearest
              one and replay the rest. Events stay the truth.
            - Snapshots are kept per version, so `load(at_version=)` and time
              travel are fast at any point of the history.
            - A snapshot strategy decides when to take one; housekeeping keeps
              the number down.

            **Next:** [05 · Unique constraints](05_unique_constraints.ipynb).
            """
        ),
        md("Done: close the store and remove its temporary folder."),
        code(
            """
            store.close()
            workdir.cleanup()
            """
        ),
    ]


# -- 05 -----------------------------------------------------------------------------------------
USERS_PROTO = """
%%es_generate --name users
syntax = "proto3";
package users.v1;

import "eventsourcing/options.proto";

// A user account; its e-mail address must be unique among all users.
message UserState {
  option (eventsourcing.aggregate_root) = {id_field: "user_id" type_name: "User"};
  string user_id = 1;
  string name = 2;
  string email = 3;
}

message UserRegistered {
  option (eventsourcing.event).aggregate_name = "User";
  string name = 1;
  string email = 2;
}

message EmailChanged {
  option (eventsourcing.event).aggregate_name = "User";
  string old_email = 1;
  string new_email = 2;
}

message RegisterUserCommand {
  string user_id = 1;
  string name = 2;
  string email = 3;
}

message RegisterUserResponse {
  int64 version = 1;
}

service UserCommandService {
  option (eventsourcing.service) = {aggregate_name: "User"};
  // Fails with EMAIL_TAKEN when another user has the address.
  rpc RegisterUser(RegisterUserCommand) returns (RegisterUserResponse);
}
"""


OWNERSHIP_CHART = """
import altair as alt
import pandas as pd
from eventstore import ConstraintOp

spans, held = [], {}
for event in store.iter_all():
    for c in event.constraints:
        key = (c.index, c.value)
        if c.op is ConstraintOp.RELEASE and key in held:
            spans.append({**held.pop(key), "to": event.position})
        elif c.op is ConstraintOp.CLAIM:
            held[key] = {"value": c.value, "owner": event.aggregate_id, "from": event.position}
head = store.head_position()
spans += [{**claim, "to": head + 1} for claim in held.values()]

alt.Chart(pd.DataFrame(spans), title="Who owned each address (by log position)").mark_bar(
    height=18).encode(
    x=alt.X("from:Q", title="log position", axis=alt.Axis(tickMinStep=1, format="d")),
    x2="to:Q",
    y=alt.Y("value:N", title=None),
    color=alt.Color("owner:N", title="owner"),
    tooltip=["value", "owner", "from", "to"],
).properties(width=520)
"""


def constraints() -> list[Cell]:
    return [
        md(
            """
            # 05 · Unique constraints

            *No two users may share an e-mail address.* In a table-per-entity
            database that is a unique index. In an event store each user is its
            own stream, and a check like "load all users and look" races with
            the user registering at the same moment.

            The store solves it where it can be solved atomically: an event may
            carry **constraint claims** (`UniqueConstraint(index, value)`) and
            **releases**. The store checks and records them in the same
            transaction as the event: either the event is stored and the value is
            yours, or neither happens.
            """
        ),
        SETUP,
        code(USERS_PROTO),
        code(
            """
            class UserApplier:
                def apply_user_registered(self, agg, event):
                    agg.name, agg.email = event.name, event.email

                def apply_email_changed(self, agg, event):
                    agg.email = event.new_email
            """
        ),
        md(
            """
            The store is a SQLite file this time (section 5 damages it from
            outside), in a temporary folder removed at the end.
            """
        ),
        code(
            """
            import os, tempfile
            from eventstore import UniqueConstraint, UniqueConstraintError

            workdir = tempfile.TemporaryDirectory()
            path = os.path.join(workdir.name, "users.db")
            %es_store $path
            repo = UserRepository(store, UserApplier())
            """
        ),
        md(
            """
            ## 1. Claim

            Registering claims the address in the index `user_email`. An index
            is just a name: one per thing that must be unique.
            """
        ),
        code(
            """
            def register(user_id, name, email):
                user = repo.factory(user_id)
                user.apply_change(UserRegistered(name=name, email=email),
                                  constraints=[UniqueConstraint("user_email", email)])
                return repo.save(user)

            register("user-1", "Ada", "ada@example.com")
            print("owner of ada@example.com:", store.constraint_owner("user_email", "ada@example.com"))
            """
        ),
        md(
            """
            ## 2. Conflict

            A second user claiming the same address is refused, with the facts
            as attributes: which index, which value, who owns it, who asked.
            Nothing of `user-2` is stored.
            """
        ),
        code(
            """
            try:
                register("user-2", "Another Ada", "ada@example.com")
            except UniqueConstraintError as error:
                print(f"index {error.index!r}, value {error.value!r}, "
                      f"owner {error.owner!r}, requester {error.requester!r}")
                print(error)
            print("user-2 has", store.stream_version("user-2"), "events")
            """
        ),
        md(
            """
            ## 3. Release (and claim again, in one event)

            Changing the address releases the old value and claims the new one,
            on the same event, so there is no moment where the user has neither
            (or both).
            """
        ),
        code(
            """
            def change_email(user_id, new_email):
                user = repo.load(user_id)
                old = user.email
                user.apply_change(
                    EmailChanged(old_email=old, new_email=new_email),
                    constraints=[UniqueConstraint.release("user_email", old),
                                 UniqueConstraint("user_email", new_email)])
                return repo.save(user)

            change_email("user-1", "ada@lovelace.org")
            register("user-2", "Another Ada", "ada@example.com")   # free now
            for email in ("ada@example.com", "ada@lovelace.org"):
                print(f"{email:<18} owned by {store.constraint_owner('user_email', email)}")
            """
        ),
        md(
            """
            Only the owner can release a value. A release by anyone else fails
            the same way a conflicting claim does:
            """
        ),
        code(
            """
            from eventstore import UniqueConstraintReleaseError

            intruder = repo.load("user-2")
            intruder.apply_change(EmailChanged(old_email="ada@lovelace.org", new_email="x@example.com"),
                                  constraints=[UniqueConstraint.release("user_email", "ada@lovelace.org")])
            try:
                repo.save(intruder)
            except UniqueConstraintReleaseError as error:
                print(error)
            """
        ),
        md(
            """
            ## 4. Through a service: a business error, not a crash

            A `UniqueConstraintError` is a storage fact. Across a service boundary
            the client needs a business answer: the handler turns it into an
            `AppError` with a code the client can act on.
            """
        ),
        code(
            """
            from eventstore import AppError, InProcessTransport

            class UserCommands:
                def register_user(self, cmd, ctx):
                    def register_(user):
                        user.apply_change(UserRegistered(name=cmd.name, email=cmd.email),
                                          constraints=[UniqueConstraint("user_email", cmd.email)])
                    try:
                        result = repo.retry_on_conflict(cmd.user_id, register_, command_id=ctx.command_id)
                    except UniqueConstraintError as taken:
                        raise AppError("EMAIL_TAKEN", f"{cmd.email} is already registered",
                                       "Sign in instead, or use another address.",
                                       {"email": cmd.email}) from taken
                    return RegisterUserResponse(version=result.version)

            client = UserClient(InProcessTransport(UserCommandServiceServer(UserCommands())))
            try:
                await client.register_user(RegisterUserCommand(user_id="user-3", name="Eve",
                                                               email="ada@lovelace.org"))
            except AppError as error:
                print(error.code, "|", error.message, "|", error.solution)
            """
        ),
        md(
            """
            ## 5. The constraint table is derived from the log

            Claims and releases are stored **on the events**; the table of
            current owners is a cache of them. If it is ever lost or damaged (a
            restore of part of a backup, a manual edit), `rebuild_constraints()`
            recomputes it from the log. Here another program empties it behind
            the store's back:
            """
        ),
        code(
            """
            import sqlite3

            with sqlite3.connect(path) as outsider:
                outsider.execute("DELETE FROM unique_constraints")
            outsider.close()
            print("after the damage:", store.constraint_owner("user_email", "ada@lovelace.org"))

            claims = store.rebuild_constraints()
            print(f"rebuilt {claims} claims; owner of ada@lovelace.org:",
                  store.constraint_owner("user_email", "ada@lovelace.org"))
            """
        ),
        md(
            """
            ## 6. Who owned what, when

            Every claim and release is on an event, so the log can draw the
            history of each address: a bar from the event that claimed it to the
            one that released it (or to now), one colour per owner.
            """
        ),
        code(OWNERSHIP_CHART),
        md(
            """
            `ada@example.com` belonged to `user-1` until Ada changed her address
            (the event at position 2 released it and claimed `ada@lovelace.org`
            in one go), and was free until `user-2` claimed it with the next
            event. The refused claims (the second Ada at first, Eve) left no
            trace: their events were never stored. The log itself:
            """
        ),
        code("%es_events --brief"),
        md(
            """
            ## What you learned

            - Put uniqueness claims on the event that needs them; the store
              checks them in the event's own transaction.
            - Release and claim on one event to move a value without a gap.
            - Turn `UniqueConstraintError` into an `AppError` at the service.
            - The owners table is derived from the log: `rebuild_constraints()`.

            **Next:** [06 · Schema evolution and upcasting](06_schema_evolution_upcasting.ipynb).
            """
        ),
        md("Done: close the store and remove its temporary folder."),
        code(
            """
            store.close()
            workdir.cleanup()
            """
        ),
    ]


# -- 06 -----------------------------------------------------------------------------------------
CRM_V1 = """
%%es_generate --name v1
syntax = "proto3";
package crm.v1;

import "eventsourcing/options.proto";

message CustomerState {
  option (eventsourcing.aggregate_root) = {id_field: "customer_id" type_name: "Customer"};
  string customer_id = 1;
  string name = 2;
}

message CustomerRegistered {
  option (eventsourcing.event).aggregate_name = "Customer";
  string name = 1;
}
"""

CRM_V2 = """
%%es_generate --name v2
syntax = "proto3";
package crm.v2;

import "eventsourcing/options.proto";

message CustomerState {
  option (eventsourcing.aggregate_root) = {id_field: "customer_id" type_name: "Customer"};
  string customer_id = 1;
  string first_name = 2;
  string last_name = 3;
  string email = 4;
}

// Replaces crm.v1.CustomerRegistered: the name comes in two parts.
message CustomerRegistered {
  option (eventsourcing.event).aggregate_name = "Customer";
  string first_name = 1;
  string last_name = 2;
}

message EmailAdded {
  option (eventsourcing.event).aggregate_name = "Customer";
  string email = 1;
}
"""


def evolution() -> list[Cell]:
    return [
        md(
            """
            # 06 · Schema evolution and upcasting

            Events are stored forever, but the code that reads them changes. A
            field gets split, an event gets a better shape, a state message grows.
            The log must never be rewritten (it is the record of what happened),
            so the **reading** side adapts:

            - an **upcaster** turns a stored event of an old shape into the
              current one while it is loaded;
            - a snapshot taken with an old state shape is recognised by its
              **schema key** and ignored (or upcast too), and the events are
              replayed instead.

            The story: a CRM stores customers with one `name` field (v1). Then
            the team needs first and last names (v2).
            """
        ),
        SETUP,
        md("## 1. Version 1, in production"),
        code(CRM_V1),
        md("Its applier, a store and a repository:"),
        code(
            """
            class ApplierV1:
                def apply_customer_registered(self, agg, event):
                    agg.name = event.name

            %es_store
            repo_v1 = v1.CustomerRepository(store, ApplierV1())
            """
        ),
        md(
            """
            Three customers register, and each is saved with a snapshot of its
            v1 state (section 4 comes back to those snapshots):
            """
        ),
        code(
            """
            customers = {"c-1": "Ada Lovelace", "c-2": "Alan Turing", "c-3": "Grace Brewster Hopper"}

            for customer_id, name in customers.items():
                customer = repo_v1.factory(customer_id)
                customer.apply_change(v1.CustomerRegistered(name=name))
                repo_v1.save(customer)
                repo_v1.save_snapshot(customer)
            """
        ),
        code("%es_events --brief"),
        md(
            """
            ## 2. Version 2: the schema changes

            The new proto lives in package `crm.v2`: the state has first and last
            names and an e-mail address, `CustomerRegistered` has two name
            fields, and there is a new event. Running `%%es_generate` again binds
            the new classes (the v1 module stays reachable as `v1`).
            """
        ),
        code(CRM_V2),
        code(
            """
            class ApplierV2:
                def apply_customer_registered(self, agg, event):
                    agg.first_name, agg.last_name = event.first_name, event.last_name

                def apply_email_added(self, agg, event):
                    agg.email = event.email

            repo_v2 = v2.CustomerRepository(store, ApplierV2())
            """
        ),
        md(
            """
            The stored events are `crm.v1.CustomerRegistered`. The v2 repository
            has never heard of that type, and says so:
            """
        ),
        code(
            """
            from eventstore import EventDecodeError

            try:
                repo_v2.load("c-1")
            except EventDecodeError as error:
                print(error)
            """
        ),
        md(
            """
            ## 3. An upcaster

            An upcaster is a function from a stored `Event` to an `Event`,
            registered for the stored type. This one reads the old payload with
            the v1 class, splits the name, and returns the event with a v2
            payload (`with_payload` keeps its id, version, position and metadata).
            Upcasters can chain (v1 to v2 to v3); the log is untouched.
            """
        ),
        code(
            """
            from eventstore import Upcasters

            upcasters = Upcasters()

            @upcasters.register("crm.v1.CustomerRegistered")
            def split_name(event):
                old = v1.CustomerRegistered.FromString(event.data)
                first, _, last = old.name.partition(" ")
                new = v2.CustomerRegistered(first_name=first, last_name=last)
                return event.with_payload("crm.v2.CustomerRegistered", new.SerializeToString())

            repo_v2 = v2.CustomerRepository(store, ApplierV2(), upcasters=upcasters)
            ada = repo_v2.load("c-1")
            print(f"first {ada.first_name!r}, last {ada.last_name!r}, version {ada.version}")
            """
        ),
        md(
            """
            ## 4. The old snapshot is ignored

            Each generated aggregate has a `schema_key`: a hash of its state
            message (and everything it contains). A snapshot is stored with the
            key of the state it holds. The v1 snapshots do not match the v2
            state, so the repository ignores them and replays the events
            (through the upcaster) instead. It logs that it did:
            """
        ),
        code(
            """
            import logging, sys

            logger = logging.getLogger("eventstore.repository")
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)

            print("v1 state key:", v1.CustomerAggregate.schema_key, "| snapshot key:",
                  store.latest_snapshot("c-2").schema_key)
            print("v2 state key:", v2.CustomerAggregate.schema_key)
            alan = repo_v2.load("c-2")
            print(f"loaded {alan.first_name} {alan.last_name}; from a snapshot? {bool(alan.snapshot_version)}")
            logger.removeHandler(handler)
            """
        ),
        md(
            """
            Replaying is always correct, just slower. When snapshots matter, a
            **snapshot upcaster** converts old ones instead: it gets the stored
            `Snapshot` and returns one with the new key, or `None` to ignore it.
            """
        ),
        code(
            """
            import dataclasses

            def upcast_snapshot(snapshot):
                if snapshot.schema_key != v1.CustomerAggregate.schema_key:
                    return None
                old = v1.CustomerState.FromString(snapshot.data)
                first, _, last = old.name.partition(" ")
                new = v2.CustomerState(customer_id=old.customer_id, first_name=first, last_name=last)
                return dataclasses.replace(snapshot, schema_key=v2.CustomerAggregate.schema_key,
                                           data=new.SerializeToString())

            repo_v2 = v2.CustomerRepository(store, ApplierV2(), upcasters=upcasters,
                                            snapshot_upcaster=upcast_snapshot)
            grace = repo_v2.load("c-3")
            print(f"first {grace.first_name!r}, last {grace.last_name!r}, "
                  f"from the snapshot at version {grace.snapshot_version}")
            """
        ),
        md(
            """
            Look at Grace: *Brewster* is her middle name, but the upcaster made
            it part of her last name. An upcaster can only make a **best
            guess** from what the old event holds: v1 never recorded where a
            first name ends, so no split into two fields is right for every
            name. That is worth saying out loud when you change a schema:
            decide what the guess is (here: the first word is the first name),
            write it down, and give people a way to correct it, which in an
            event-sourced system is a *new* event (say, `NameCorrected`), never
            an edit of the old one.
            """
        ),
        md(
            """
            ## 5. Life goes on in v2

            New events are stored in the new shape; old ones stay as they were
            and are upcast whenever they are read. The log now holds both types:
            """
        ),
        code(
            """
            customer = repo_v2.load("c-1")
            customer.apply_change(EmailAdded(email="ada@example.com"))
            repo_v2.save(customer)

            newcomer = repo_v2.factory("c-4")
            newcomer.apply_change(v2.CustomerRegistered(first_name="Barbara", last_name="Liskov"))
            repo_v2.save(newcomer)

            %es_events
            """
        ),
        md(
            """
            `%es_events` decodes each stored event with the class of its *stored*
            type. Give a frame the repository instead and it shows the events as
            the v2 code sees them, upcaster applied:
            """
        ),
        code(
            """
            from eventstore.notebook import charts, frames

            as_read = frames.store_events_frame(store, types=repo_v2)
            as_read[["position", "aggregate_id", "version", "event_type", "payload"]]
            """
        ),
        md(
            """
            The `event_type` column is still the *stored* type: the log did not
            change. Counting the stored types makes the point as a picture:
            """
        ),
        code(
            """
            import altair as alt

            alt.Chart(as_read, title="Stored event types").mark_bar().encode(
                x=alt.X("count():Q", title="events", axis=alt.Axis(tickMinStep=1, format="d")),
                y=alt.Y("event_type:N", title=None),
                color=alt.Color("event_type:N", legend=None),
            )
            """
        ),
        md(
            """
            ## What you learned

            - Never rewrite the log: adapt old events on the way in, with upcasters.
            - Give a changed event a new type name (a new package version is a
              clean way), and upcast the old type to it.
            - Snapshots carry the schema key of their state; a mismatch is
              ignored (the events are replayed) or converted by a snapshot upcaster.

            That is the end of the tutorials. The datasets in
            `eventstore.datasets` (`bank`, `shop`) are there to keep exploring.
            """
        ),
    ]


BUILDERS = {
    "01_quickstart": quickstart,
    "02_commands_idempotency_concurrency": commands,
    "03_projections_read_models": projections,
    "04_snapshots_time_travel": snapshots,
    "05_unique_constraints": constraints,
    "06_schema_evolution_upcasting": evolution,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = BUILDERS[name]()
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids: small diffs when cells change
    return nb


def execute(nb: nbformat.NotebookNode) -> float:
    from nbclient import NotebookClient

    started = time.perf_counter()
    client = NotebookClient(
        nb,
        kernel_name=KERNEL["name"],
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execute", action="store_true", help="run each notebook, save outputs")
    parser.add_argument("only", nargs="*", help="substrings of the notebooks to build")
    args = parser.parse_args(argv)
    NOTEBOOKS.mkdir(exist_ok=True)
    for name in BUILDERS:
        if args.only and not any(part in name for part in args.only):
            continue
        nb = build(name)
        note = ""
        if args.execute:
            note = f" (executed in {execute(nb):.1f} s)"
        nbformat.validate(nb)
        path = NOTEBOOKS / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}{note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
