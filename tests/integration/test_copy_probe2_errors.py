"""``eventstore copy`` when a side fails or both sides are one store.

A full destination disk, a damaged source file and a lost PostgreSQL connection are
reported in one line naming the side, its file or URL, the cause and the way out (a full
disk: free space and run the same command again, which resumes), never as a driver's
traceback. A destination that is the source, however spelled, is refused before
anything opens either, never told to delete itself.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from eventstore import NewEvent, new_event_id
from eventstore.cli import main as cli
from eventstore.copy import CopyError, copy_store
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]
SAME = "source and destination are the same store"


def _fill(path: Path, aggregates: int, per: int, size: int = 40) -> None:
    """``aggregates`` streams of ``per`` events of ``size`` random bytes, checkpointed
    into the database file (no write-ahead log left beside it)."""
    with SQLiteEventStore(path, synchronous="OFF") as store:
        for a in range(aggregates):
            events = [NewEvent(f"e{a}-{i}", "Noted", os.urandom(size)) for i in range(per)]
            store.append(f"acc-{a}", "Account", 0, events, command_id=f"c-{a}")
        store.save_checkpoint("relay:events", 7)
    assert not Path(f"{path}-wal").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _events(path: Path) -> list[tuple]:
    with SQLiteEventStore(path) as store:
        return [(e.position, e.event_id, e.data) for e in store.read_all()]


# -- a full destination disk --------------------------------------------------------------------
_SCRIPT = """
set -u
mount -t tmpfs -o size=800k tmpfs "$SMALL" || exit 90
"$PY" -c "$CLI" copy "$SRC" "sqlite:///$SMALL/full.db" 2> "$OUT/first.err"
echo $? > "$OUT/first.rc"
mount -o remount,size=64m "$SMALL" || exit 91
"$PY" -c "$CLI" copy "$SRC" "sqlite:///$SMALL/full.db" 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
cp "$SMALL"/full.db* "$OUT"/
"""


def test_a_full_destination_disk_is_named_in_one_line_and_the_same_command_resumes(tmp_path):
    """The destination on an 800 KiB tmpfs (in a mount namespace of its own): the first
    chunk of 5,000 events fits (about 540 KB), the second does not; after the tmpfs grew,
    the same command resumes and verifies."""
    source = tmp_path / "big.db"
    _fill(source, aggregates=120, per=100, size=1)
    small, out = tmp_path / "small", tmp_path / "out"
    small.mkdir()
    out.mkdir()
    unshare = ["unshare", "--mount"]
    if os.geteuid() != 0:  # a user namespace of its own, whose root may mount a tmpfs
        unshare += ["--user", "--map-root-user"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PY": sys.executable,
        "CLI": "import sys; from eventstore.cli import main; sys.exit(main(sys.argv[1:]))",
        "SRC": f"sqlite:///{source}",
        "SMALL": str(small),
        "OUT": str(out),
    }
    done = subprocess.run(
        [*unshare, "sh", "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    first = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "1", first
    assert "Traceback" not in first, first
    assert "events 5,000/12,000" in first  # a chunk was copied before the disk filled
    failure = first.splitlines()[-1]
    assert failure.startswith("eventstore copy: the destination "), first
    assert f"{small}/full.db" in failure
    assert "full" in failure and "Free space" in failure
    assert "run the same command again" in failure and "resumes" in failure
    assert len([line for line in first.splitlines() if "eventstore copy" in line]) == 1
    second = (out / "second.err").read_text()
    assert (out / "second.rc").read_text().strip() == "0", second
    assert "resuming after position 5,000" in second and "verified" in second
    assert _events(out / "full.db") == _events(source)


# -- a damaged source ---------------------------------------------------------------------------
def test_a_damaged_source_is_named_in_one_line_with_the_way_out(tmp_path, capsys):
    source, destination = tmp_path / "damaged.db", tmp_path / "copy.db"
    _fill(source, aggregates=60, per=100)
    size = source.stat().st_size
    with open(source, "r+b") as file:  # a fifth of the file, from the middle, overwritten
        file.seek(size * 2 // 5)
        file.write(b"\xde\xad\xbe\xef" * (size // 20))
    assert cli(["copy", f"sqlite:///{source}", f"sqlite:///{destination}"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    failure = err.splitlines()[-1]
    assert failure.startswith(f"eventstore copy: the source 'sqlite:///{source}'"), err
    assert "damaged" in failure and "Restore it from a backup" in failure
    assert len([line for line in err.splitlines() if "eventstore copy" in line]) == 1


def test_a_damaged_source_says_to_delete_the_unfinished_copy_it_left(tmp_path):
    """Resuming from a restored file would keep what came from the damaged one."""
    source, destination = tmp_path / "damaged.db", tmp_path / "copy.db"
    _fill(source, aggregates=60, per=100)
    size = source.stat().st_size
    with open(source, "r+b") as file:
        file.seek(size * 2 // 5)
        file.write(b"\xde\xad\xbe\xef" * (size // 20))
    with pytest.raises(CopyError) as caught:
        copy_store(f"sqlite:///{source}", f"sqlite:///{destination}", chunk=100)
    error = caught.value
    assert (error.side, error.url) == ("source", f"sqlite:///{source}")
    assert isinstance(error.__cause__, sqlite3.DatabaseError)
    assert "damaged" in str(error)
    with sqlite3.connect(destination) as conn:  # marked as an unfinished copy
        marked = conn.execute("SELECT name FROM sqlite_master WHERE name='eventstore_copy'")
        assert marked.fetchall() == [("eventstore_copy",)]
    assert (
        f"the destination 'sqlite:///{destination}' holds the unfinished copy: delete it, "
        "then copy from the restored file"
    ) in str(error)


# -- a lost PostgreSQL connection ---------------------------------------------------------------
def test_a_lost_postgresql_connection_names_the_destination_and_the_copy_resumes(tmp_path):
    source = tmp_path / "a.db"
    _fill(source, aggregates=10, per=10)
    schema = postgres.fresh_schema()
    dsn = postgres.server_dsn()
    name = f"copy-{schema}"  # the copy's connections, and only they, carry it
    url = dsn + ("&" if "?" in dsn else "?") + f"schema={schema}&application_name={name}"
    seen: list[str] = []

    def cut_the_connection(text: str) -> None:
        seen.append(text)
        if len(seen) == 2:
            with psycopg.connect(dsn, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (name,),
                ).fetchall()
            assert (True,) in cut

    with pytest.raises(CopyError) as caught:
        copy_store(str(source), url, progress=cut_the_connection, chunk=20)
    error = caught.value
    assert error.side == "destination" and "\n" not in str(error)
    assert str(error).startswith(f"eventstore copy: the destination {url!r}")
    assert "connection" in str(error) and "run the same command again" in str(error)
    assert isinstance(error.__cause__, psycopg.OperationalError)
    report = copy_store(str(source), url, chunk=20)
    assert report.resumed_after == 40
    with PostgresEventStore(dsn, schema=schema) as copied:
        assert [(e.position, e.event_id, e.data) for e in copied.read_all()] == _events(source)


# -- the same store as source and destination ---------------------------------------------------
@pytest.mark.parametrize(
    ("source", "destination"),
    [
        ("sqlite:///src.db", "sqlite:///src.db"),
        ("sqlite:///src.db", "sqlite:///{dir}/src.db"),
        ("src.db", "{dir}/src.db"),
        ("sqlite:///src.db", "src.db"),
        ("./src.db", "file:src.db"),
        ("sqlite:///src.db", "file://{dir}/src.db?mode=rw"),
        ("sqlite:///src.db", "sqlite:///{dir}/sub/../src.db?synchronous=NORMAL"),
        ("sqlite:///src.db", "sqlite:///link.db"),  # a symbolic link to it
        ("sqlite:///src.db", "sqlite:///hard.db"),  # a second name (hard link) of it
    ],
)
def test_a_sqlite_destination_that_is_the_source_is_refused_before_anything(
    tmp_path, monkeypatch, capsys, source, destination
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    _fill(tmp_path / "src.db", aggregates=2, per=3)
    (tmp_path / "link.db").symlink_to(tmp_path / "src.db")
    os.link(tmp_path / "src.db", tmp_path / "hard.db")
    before = _digest(tmp_path / "src.db")
    destination = destination.format(dir=tmp_path)
    assert cli(["copy", source, destination]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"eventstore copy: {SAME}"), err
    assert str(tmp_path / "src.db") in err
    assert "delete" not in err and len(err.splitlines()) == 1
    assert _digest(tmp_path / "src.db") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hard.db",
        "link.db",
        "src.db",
        "sub",
    ]


def test_a_sqlite_source_that_does_not_exist_yet_is_still_the_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CopyError, match=SAME):
        copy_store("sqlite:///new.db", str(tmp_path / "new.db"))
    assert list(tmp_path.iterdir()) == []


def test_two_files_of_one_name_in_different_folders_are_copied(tmp_path, monkeypatch):
    (tmp_path / "b").mkdir()
    _fill(tmp_path / "src.db", aggregates=2, per=3)
    monkeypatch.chdir(tmp_path / "b")
    report = copy_store(str(tmp_path / "src.db"), "sqlite:///src.db")
    assert report.counts["events"] == 6


def _pg_url(dsn: str, schema: str, extra: str = "") -> str:
    return dsn + ("&" if "?" in dsn else "?") + f"schema={schema}" + extra


def _other_host_spelling(dsn: str) -> str:
    """The DSN with its host spelled another way: 127.0.0.1 as localhost, or back."""
    if "@127.0.0.1:" in dsn:
        return dsn.replace("@127.0.0.1:", "@localhost:", 1)
    assert "@localhost:" in dsn, f"this test spells 127.0.0.1 or localhost another way: {dsn}"
    return dsn.replace("@localhost:", "@127.0.0.1:", 1)


@pytest.mark.parametrize("spelling", ["same", "scheme and a libpq option", "host"])
def test_a_postgresql_destination_that_is_the_source_is_refused(spelling):
    dsn = postgres.server_dsn()
    schema = postgres.fresh_schema()
    with PostgresEventStore(dsn, schema=schema) as store:
        store.append("acc-1", "Account", 0, [NewEvent(new_event_id(), "Opened", b"")])
    source = _pg_url(dsn, schema)
    destination = {
        "same": source,
        "scheme and a libpq option": _pg_url(
            dsn.replace("postgresql://", "postgres://", 1), schema, "&connect_timeout=7"
        ),
        "host": _pg_url(_other_host_spelling(dsn), schema),
    }[spelling]
    with pytest.raises(CopyError, match=SAME) as caught:
        copy_store(source, destination)
    assert f"schema {schema!r}" in str(caught.value) and "delete" not in str(caught.value)
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    assert ("eventstore_copy",) not in tables


def test_two_schemas_of_one_postgresql_database_are_copied():
    dsn = postgres.server_dsn()
    schema, other = postgres.fresh_schema(), postgres.fresh_schema()
    with PostgresEventStore(dsn, schema=schema) as store:
        store.append("acc-1", "Account", 0, [NewEvent(new_event_id(), "Opened", b"")])
    report = copy_store(_pg_url(dsn, schema), _pg_url(dsn, other))
    assert report.counts["events"] == 1
