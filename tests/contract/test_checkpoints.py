"""Checkpoints: the last global position a named reader handled."""

from __future__ import annotations

import pytest


def test_unknown_checkpoint_is_zero(store):
    assert store.load_checkpoint("never-ran") == 0


def test_saved_checkpoint_reads_back(store):
    store.save_checkpoint("balances", 42)
    assert store.load_checkpoint("balances") == 42


def test_saving_again_moves_the_checkpoint(store):
    store.save_checkpoint("balances", 42)
    store.save_checkpoint("balances", 57)
    assert store.load_checkpoint("balances") == 57


def test_checkpoints_are_independent_by_name(store):
    store.save_checkpoint("a", 1)
    store.save_checkpoint("b", 2)
    assert (store.load_checkpoint("a"), store.load_checkpoint("b")) == (1, 2)


def test_deleted_checkpoint_reads_as_zero(store):
    store.save_checkpoint("balances", 42)
    store.delete_checkpoint("balances")
    assert store.load_checkpoint("balances") == 0


def test_negative_checkpoint_is_rejected(store):
    with pytest.raises(ValueError, match="position"):
        store.save_checkpoint("balances", -1)
    assert store.load_checkpoint("balances") == 0
