"""A filtered page and how far it scanned: what lets filtered readers skip what they read past."""

from __future__ import annotations

from eventstore import read_page

from .builders import DEPOSITED, OPENED, append_deposits


def test_a_page_that_is_not_full_has_scanned_to_the_head(store):
    append_deposits(store, "a", 5)
    page = store.read_page(0, limit=10, event_types=[OPENED])
    assert page.events == []
    assert page.scanned_to == store.head_position() == 5


def test_a_full_page_has_scanned_to_its_last_event(store):
    append_deposits(store, "a", 5)
    page = store.read_page(1, limit=2, event_types=[DEPOSITED])
    assert [e.position for e in page.events] == [2, 3]
    assert page.scanned_to == 3


def test_reading_on_after_scanned_to_finds_later_matches_only(store):
    append_deposits(store, "a", 3)
    first = store.read_page(0, limit=10, event_types=[OPENED])
    append_deposits(store, "a", 2)
    second = store.read_page(first.scanned_to, limit=10, event_types=[DEPOSITED])
    assert [e.position for e in second.events] == [4, 5]


def test_an_empty_store_scans_to_the_position_read_after(store):
    assert store.read_page(0, limit=5).scanned_to == 0


def test_the_core_default_matches_the_adapter_for_sources_without_read_page(store):
    append_deposits(store, "a", 4)

    class Plain:  # only read_all and head_position, as a minimal EventSource
        read_all = staticmethod(store.read_all)
        head_position = staticmethod(store.head_position)

    for after, limit, types in [(0, 10, [OPENED]), (0, 2, [DEPOSITED]), (2, 10, None)]:
        ours = read_page(Plain(), after, limit=limit, event_types=types)
        theirs = store.read_page(after, limit=limit, event_types=types)
        assert (ours.events, ours.scanned_to) == (theirs.events, theirs.scanned_to)


def test_a_checkpoint_keeps_its_scanned_position_beside_it(store):
    store.save_checkpoint("mails", 3, scanned_position=40)
    assert (store.load_checkpoint("mails"), store.load_scanned_position("mails")) == (3, 40)
    store.save_checkpoint("mails", 0)  # a reset moves both back
    assert (store.load_checkpoint("mails"), store.load_scanned_position("mails")) == (0, 0)


def test_a_scanned_position_is_never_below_its_checkpoint(store):
    store.save_checkpoint("mails", 7, scanned_position=2)
    assert store.load_scanned_position("mails") == 7
    assert store.load_scanned_position("never-ran") == 0


def test_a_reader_paging_by_scanned_to_beside_a_writer_gets_each_event_once(store):
    # Events that commit between a page's two reads (PostgreSQL reads the head, then
    # the events) must not be handed out again by the next page.
    import threading

    total = 300
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(total):
                append_deposits(store, f"w-{i}", 1)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    after = 0
    while True:
        finished = done.is_set()  # read before the page: a page after it sees everything
        page = store.read_page(after, limit=7)
        seen.extend(e.position for e in page.events)
        after = page.scanned_to
        if finished and not page.events:
            break
    writer.join()
    assert len(seen) == len(set(seen)) == total
    assert seen == sorted(seen)
