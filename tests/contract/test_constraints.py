"""Unique constraints: claimed and released in the append transaction, rebuilt from the log."""

from __future__ import annotations

import pytest

from eventstore import (
    ConstraintOp,
    UniqueConstraint,
    UniqueConstraintError,
    UniqueConstraintReleaseError,
)
from eventstore.core.tenancy import with_tenant
from tests.support.bank import Account, account_repository, pb

from .builders import deposit, log_contents, opened

CLAIM_ANN = UniqueConstraint("owner", "ann")
RELEASE_ANN = UniqueConstraint.release("owner", "ann")


def test_claim_records_the_owner(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    assert store.constraint_owner("owner", "ann") == "acc-1"


def test_unclaimed_value_has_no_owner(store):
    assert store.constraint_owner("owner", "ann") is None


def test_claim_of_owned_value_fails_with_owner_and_writes_nothing(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    before = log_contents(store)
    with pytest.raises(UniqueConstraintError) as info:
        store.append("acc-2", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    err = info.value
    assert (err.index, err.value, err.owner, err.requester) == ("owner", "ann", "acc-1", "acc-2")
    assert "ann" in str(err) and "acc-1" in str(err)
    assert log_contents(store) == before
    assert store.stream_version("acc-2") == 0
    assert store.constraint_owner("owner", "ann") == "acc-1"


def test_owner_claiming_its_own_value_again_is_harmless(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    store.append("acc-1", "Account", 1, [deposit(constraints=[CLAIM_ANN])])
    assert store.constraint_owner("owner", "ann") == "acc-1"


def test_same_value_in_different_indexes_is_independent(store):
    store.append("acc-1", "Account", 0, [opened(constraints=[UniqueConstraint("owner", "x")])])
    store.append("acc-2", "Account", 0, [opened(constraints=[UniqueConstraint("email", "x")])])
    assert store.constraint_owner("owner", "x") == "acc-1"
    assert store.constraint_owner("email", "x") == "acc-2"


def test_release_by_non_owner_is_an_error_and_writes_nothing(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    store.append("acc-2", "Account", 0, [opened("bob")])
    before = log_contents(store)
    with pytest.raises(UniqueConstraintReleaseError) as info:
        store.append("acc-2", "Account", 1, [deposit(constraints=[RELEASE_ANN])])
    assert info.value.owner == "acc-1"
    assert info.value.requester == "acc-2"
    assert log_contents(store) == before
    assert store.constraint_owner("owner", "ann") == "acc-1"


def test_release_of_unclaimed_value_is_an_error(store):
    with pytest.raises(UniqueConstraintReleaseError) as info:
        store.append("acc-1", "Account", 0, [opened(constraints=[RELEASE_ANN])])
    assert info.value.owner is None
    assert store.head_position() == 0


def test_release_then_claim_by_another_works(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    store.append("acc-1", "Account", 1, [deposit(constraints=[RELEASE_ANN])])
    assert store.constraint_owner("owner", "ann") is None
    store.append("acc-2", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    assert store.constraint_owner("owner", "ann") == "acc-2"


def test_release_op_is_stored_with_the_event(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    store.append("acc-1", "Account", 1, [deposit(constraints=[RELEASE_ANN])])
    ops = [c.op for e in store.read_all() for c in e.constraints]
    assert ops == [ConstraintOp.CLAIM, ConstraintOp.RELEASE]


def test_claim_failing_on_a_later_event_rolls_back_earlier_claims(store):
    store.append(
        "acc-9", "Account", 0, [opened("bob", constraints=[UniqueConstraint("owner", "bob")])]
    )
    with pytest.raises(UniqueConstraintError):
        store.append(
            "acc-1",
            "Account",
            0,
            [
                opened("ann", constraints=[CLAIM_ANN, UniqueConstraint("email", "a@x")]),
                deposit(constraints=[UniqueConstraint("owner", "bob")]),
            ],
        )
    assert store.constraint_owner("owner", "ann") is None
    assert store.constraint_owner("email", "a@x") is None
    assert store.stream_version("acc-1") == 0


def test_rebuild_constraints_recomputes_owners_from_the_log(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    store.append(
        "acc-2", "Account", 0, [opened("bob", constraints=[UniqueConstraint("owner", "bob")])]
    )
    store.append("acc-1", "Account", 1, [deposit(constraints=[RELEASE_ANN])])
    store.append("acc-3", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    assert store.rebuild_constraints() == 2
    assert store.constraint_owner("owner", "ann") == "acc-3"
    assert store.constraint_owner("owner", "bob") == "acc-2"


def test_rebuild_constraints_on_empty_log_clears_nothing_and_counts_zero(store):
    assert store.rebuild_constraints() == 0


def test_constraints_still_enforced_after_rebuild(store):
    store.append("acc-1", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])
    store.rebuild_constraints()
    with pytest.raises(UniqueConstraintError):
        store.append("acc-2", "Account", 0, [opened("ann", constraints=[CLAIM_ANN])])


def test_repository_save_of_a_taken_value_fails_and_keeps_the_aggregate_unsaved(store):
    repo = account_repository(store)
    first = Account("acc-1")
    first.open("ann", unique_owner=True)
    repo.save(first)
    second = Account("acc-2")
    second.open("ann", unique_owner=True)
    with pytest.raises(UniqueConstraintError):
        repo.save_with_command(second, "cmd-2")
    assert second.stored_version == 0
    assert len(second.uncommitted_events) == 1
    assert not repo.exists("acc-2")
    assert store.processed_command("cmd-2") is None


def test_constraint_with_a_plain_string_op_is_rejected_at_construction():
    with pytest.raises(TypeError, match="ConstraintOp.CLAIM"):
        UniqueConstraint("email", "x@y", "claim")  # type: ignore[arg-type]


@pytest.mark.parametrize(("index", "value"), [("", "x@y"), ("email", "")])
def test_constraint_with_an_empty_index_or_value_is_rejected(index, value):
    with pytest.raises(ValueError, match="non-empty"):
        UniqueConstraint(index, value)


@pytest.mark.parametrize(
    ("index", "value", "named"),
    [("handle", "star\ud800", "a value"), ("hand\udc80le", "star", "an index name")],
    ids=["in-the-value", "in-the-index-name"],
)
def test_constraint_with_a_lone_surrogate_is_rejected_at_construction(index, value, named):
    with pytest.raises(ValueError, match="lone surrogate") as info:
        UniqueConstraint(index, value)
    message = str(info.value)
    assert repr(index) in message and named in message and "UTF-8" in message


def test_a_tenants_release_of_a_value_another_of_its_aggregates_owns_says_so(store):
    # The owner is not named to a tenant, and the error used to say that nobody had
    # claimed the value, sending an operator to repair a table that was right.
    repo = account_repository(store, tenant_isolation=True)
    with with_tenant("acme"):
        a = Account("a")
        a.open("star", unique_owner=True)
        repo.save(a)
        b = Account("b")
        b.open("bee")
        repo.save(b)
        b = repo.load("b")
        b.apply_change(
            pb.MoneyDeposited(amount=1),
            constraints=[UniqueConstraint.release("account_owner", "star")],
        )
        with pytest.raises(UniqueConstraintReleaseError) as info:
            repo.save(b)
    err = info.value
    assert (err.value, err.owner, err.requester, err.owner_hidden) == ("star", None, "b", True)
    assert "another aggregate owns" in str(err) and "nobody" not in str(err)
    assert "'a'" not in str(err)  # the message may reach a client: the owner is not named
    assert store.constraint_owner("account_owner", "acme::star") == "acme::a"
