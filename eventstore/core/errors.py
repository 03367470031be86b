"""Errors raised by the framework.

Each error carries the facts a caller needs as attributes, and its message
names the thing, the cause and the way out (see CONVENTIONS.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# scheme://user: (what follows is the password, when an '@' ends it).
_URL_USER = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*:")
# What follows "host:" when it is a port (or a host list, an IPv6 address), not a password.
_PORT = re.compile(r"(?:\d+|[0-9A-Fa-f:]*\](?::\d*)?)(?:[,/?#]|$)")
# password=... as a query parameter (?password=) or a libpq keyword (password=x host=y).
_PASSWORD_PARAMETER = re.compile(r"(?i)((?:^|[?&\s])password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")
# A host after "user:password@": names, IPv4 and [IPv6] addresses, ports, a host list
# (empty: a unix socket given as ?host=).
_HOST = re.compile(r"[A-Za-z0-9._%~\-\[\]:,]*")
# A token a driver quotes in its message ("invalid percent-encoded token: "...").
_QUOTED = re.compile(r'"([^"]*)"')


def url_password_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host/...`` sits in ``url``:
    ``(start, end)``, or None when it has none.

    A password may hold any of ``/ ? # @`` unencoded (people paste them so), so it
    runs to the ``@`` that begins the host: the first ``@`` followed by a host (up to
    the next ``/`` or ``?``: names, addresses, ports, a host list; no ``#`` and no
    ``@``), and on over each further such ``@`` with no ``?`` between (an ``@`` after
    a ``?`` is in the query: ``host:5432/db?x=a@b`` has no password). A password
    holding ``@`` followed by something that reads as a host and then ``/`` or ``?``
    (``p@ss/w?rd``) stays ambiguous: percent-encode it.
    """
    user = _URL_USER.match(url)
    if user is None:
        return None
    start = user.end()
    rest = url[start:]
    ats = _host_ats(rest)
    if not ats:
        return None
    end = ats[0]
    if _PORT.match(rest) and "?" in rest[:end]:
        return None  # host:port/db?...@...: the '@' is the query's, not a password's end
    for later in ats[1:]:
        if "?" in rest[end + 1 : later]:
            break
        end = later
    return start, start + end


def _host_ats(rest: str) -> list[int]:
    """The positions of the ``@`` s in ``rest`` that a host follows."""
    return [i for i, ch in enumerate(rest) if ch == "@" and _HOST.fullmatch(_host_after(rest, i))]


def _host_after(rest: str, at: int) -> str:
    """What follows the ``@`` at ``at`` up to the next ``/`` or ``?``: a host if it is one."""
    host = rest[at + 1 :]
    for mark in ("/", "?"):
        cut = host.find(mark)
        if cut >= 0:
            host = host[:cut]
    return host


def redact_url(url: str) -> str:
    """The URL without its password (``postgresql://ann:***@host/db``), for messages and logs.

    Also a ``password=`` query parameter, and the libpq form ``host=h password=p``:
    anything a store accepts as a location may hold one. A password may hold
    ``/ ? # @`` unencoded (``url_password_span``).
    """
    span = url_password_span(url)
    if span is not None:
        # Hidden up to the last '@' a host follows: a password that reads as a host and
        # a query (``p@ss/w?rd@host``, ambiguous) is hidden whole, at the cost of the
        # host when a query value holds an '@'. Better too much than a secret.
        rest = url[span[0] :]
        last = max(_host_ats(rest), default=span[1] - span[0])
        url = f"{url[: span[0]]}***{url[span[0] + max(last, span[1] - span[0]) :]}"
    return _PASSWORD_PARAMETER.sub(r"\1***", url)


def location_passwords(location: str) -> list[str]:
    """The passwords a store location holds (a URL's, ``password=`` parameters), each as
    written and percent-decoded: what ``redact_secrets`` hides."""
    from urllib.parse import unquote

    found: list[str] = []
    span = url_password_span(location)
    if span is not None:
        found.append(location[span[0] : span[1]])
    for match in _PASSWORD_PARAMETER.finditer(location):
        value = match.group(2)
        found.append(value)
        if len(value) > 1 and value[0] == value[-1] == "'":
            found.append(re.sub(r"\\(.)", r"\1", value[1:-1]))
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def redact_secrets(text: str, location: str) -> str:
    """``text`` (a driver's message about ``location``) without ``location``'s passwords.

    A driver quotes the part of a location it could not read, and that part may
    hold the password or a piece of it (libpq: ``invalid percent-encoded token:
    "s3cret%zz"``): a quoted token that sits over the password in ``location``, or
    shares four characters with it (all of a shorter one), is hidden whole.
    """
    from difflib import SequenceMatcher

    secrets = location_passwords(location)
    if not secrets:
        return redact_url(text)
    span = url_password_span(location)

    def over_a_password(token: str) -> bool:
        if span is not None and token:
            at = location.find(token)
            while at >= 0:
                if at < span[1] and at + len(token) > span[0]:
                    return True
                at = location.find(token, at + 1)
        for secret in secrets:
            common = SequenceMatcher(None, token, secret, autojunk=False).find_longest_match()
            if common.size >= min(len(secret), 4):
                return True
        return False

    text = _QUOTED.sub(lambda m: '"***"' if over_a_password(m.group(1)) else m.group(0), text)
    for secret in secrets:  # a short one only as a word of its own, not inside others
        if len(secret) >= 4:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return redact_url(text)


def _rebuild_error(cls: type[BaseException], args: tuple[object, ...]) -> BaseException:
    return cls.__new__(cls, *args)


class EventStoreError(Exception):
    """Base class of every error this framework raises on purpose."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Subclasses take their facts, not the message, in __init__: rebuild without
        # calling it so errors cross process boundaries (multiprocessing) intact.
        return (_rebuild_error, (type(self), self.args), self.__dict__)


class AggregateNotFoundError(EventStoreError, LookupError):
    def __init__(self, aggregate_id: str, aggregate_type: str = "") -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        kind = f"{aggregate_type} " if aggregate_type else ""
        super().__init__(
            f"{kind}aggregate {aggregate_id!r} has no events in the store. "
            "Check the id, or create it with the repository's factory before saving."
        )


class VersionNotFoundError(EventStoreError, LookupError):
    def __init__(self, aggregate_id: str, requested: int, current: int) -> None:
        self.aggregate_id = aggregate_id
        self.requested = requested
        self.current = current
        super().__init__(
            f"aggregate {aggregate_id!r} has no version {requested}: its versions run from 1 to "
            f"{current}. Ask for a version in that range."
        )


class InvalidAggregateIdError(EventStoreError, ValueError):
    """An aggregate id that is empty or not a string (``INVALID_ARGUMENT``).

    Almost always a request whose id field was left unset (``{}`` as JSON):
    the request is at fault, not the service, so it crosses a wire as
    ``INVALID_ARGUMENT`` rather than ``INTERNAL``. Still a ``ValueError``, for
    callers that catch that. ``id_field`` is the state field the id goes to
    (generated aggregates), "" when the aggregate does not say.
    """

    def __init__(
        self,
        aggregate_id: object,
        aggregate_type: str = "",
        id_field: str = "",
        *,
        reason: str = "",
    ) -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        self.id_field = id_field
        self.reason = reason
        kind = f" of type {aggregate_type!r}" if aggregate_type else ""
        field = f" (its id field: {id_field!r})" if id_field else ""
        if reason:  # a string the stores cannot keep (a lone surrogate: not UTF-8)
            super().__init__(
                f"an aggregate{kind} cannot have the id {aggregate_id!r:.80}: {reason}. Decode "
                "the bytes the id came from as UTF-8 (errors='strict' or 'replace') before "
                "using it as an id."
            )
            return
        super().__init__(
            f"an aggregate{kind} needs a non-empty string id, got {aggregate_id!r}. Set the "
            f"aggregate's id in the request{field}, or pass it when constructing the aggregate."
        )


class ConcurrencyError(EventStoreError):
    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"aggregate {aggregate_id!r} was changed by someone else: expected version "
            f"{expected}, found {actual}.\nReload it and apply the command again "
            "(Repository.retry_on_conflict does this)."
        )


class AggregateTypeMismatchError(EventStoreError, ValueError):
    """An aggregate id whose stream belongs to another aggregate type (``INVALID_ARGUMENT``).

    Every aggregate type in a store shares one space of ids: the stream ``aggregate_id``
    holds the events of a ``stored_type`` aggregate, so this repository (of
    ``aggregate_type``) can neither load it nor start a new aggregate there, and no
    retry helps. Raised by ``Repository.load``/``save``/``retry_on_conflict`` when they
    meet such a stream (``Repository.exists`` answers False for it).
    """

    def __init__(self, aggregate_id: str, aggregate_type: str, stored_type: str) -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        self.stored_type = stored_type
        super().__init__(
            f"aggregate id {aggregate_id!r} is taken by an aggregate of type {stored_type!r}, "
            f"so it cannot be loaded or saved as a {aggregate_type!r} (its events are "
            f"{stored_type!r} events; retrying does not help). Choose another id for the "
            f"{aggregate_type!r}: all aggregate types in a store share one space of ids, so "
            f"namespace ids per type (e.g. '{aggregate_type.lower()}-<id>')."
        )


class UniqueConstraintError(EventStoreError):
    """A claim of a value another aggregate holds.

    ``owner`` is None when no aggregate holds the value, or when it is not told
    (``owner_hidden``: a tenant-isolated repository does not name the owner,
    since the message may reach a client).
    """

    def __init__(
        self,
        index: str,
        value: str,
        owner: str | None,
        requester: str = "",
        *,
        owner_hidden: bool = False,
    ) -> None:
        self.index = index
        self.value = value
        self.owner = owner
        self.requester = requester
        self.owner_hidden = owner_hidden
        super().__init__(self._describe())

    def _owner_words(self) -> str:
        return "another aggregate" if self.owner is None else f"aggregate {self.owner!r}"

    def _describe(self) -> str:
        return (
            f"unique constraint {self.index!r}: value {self.value!r} is already claimed by "
            f"{self._owner_words()}, so {self.requester or 'this aggregate'!r} cannot claim "
            "it. Choose another value, or have the owner release it first."
        )


class UniqueConstraintReleaseError(UniqueConstraintError):
    """A release of a value that the releasing aggregate does not own."""

    def _describe(self) -> str:
        if self.owner_hidden:
            return (
                f"unique constraint {self.index!r}: aggregate {self.requester!r} released value "
                f"{self.value!r}, which another aggregate owns. Only the owner can release it."
            )
        if self.owner is None:
            return (
                f"unique constraint {self.index!r}: aggregate {self.requester!r} released value "
                f"{self.value!r}, which nobody has claimed. Release only values the aggregate "
                "claimed (rebuild_constraints() repairs a table that drifted from the log)."
            )
        return (
            f"unique constraint {self.index!r}: aggregate {self.requester!r} released value "
            f"{self.value!r}, which is owned by {self.owner!r}. Only the owner can release it."
        )


class DuplicateEventIdError(EventStoreError):
    """An append carried an event id that is already stored (and no known command id)."""

    def __init__(self, aggregate_id: str, event_ids: list[str]) -> None:
        self.aggregate_id = aggregate_id
        self.event_ids = event_ids
        super().__init__(
            f"cannot append to aggregate {aggregate_id!r}: event id(s) {event_ids} already "
            "stored, so nothing was written. Event ids must be unique. A retried command is "
            "recognised by its command id, or, once its record has expired, by its event "
            "ids when it is sent again unchanged; a command that changed (other aggregates "
            "or events) needs a new command id."
        )


class CommandIdConflictError(EventStoreError):
    """A command id already recorded for another aggregate was sent for this one.

    A retry always targets the aggregate of its first run, so this is a bug of the
    client (an id reused for a new command). Nothing was written. The aggregate the
    id belongs to is not part of the error (it may be another tenant's); the store
    logs it.
    """

    def __init__(self, command_id: str, aggregate_id: str) -> None:
        self.command_id = command_id
        self.aggregate_id = aggregate_id
        super().__init__(
            f"command id {command_id!r} was already used for another aggregate, so it cannot "
            f"be applied to aggregate {aggregate_id!r}; nothing was written. A retry must go "
            "to the aggregate of the first run; give every new command a new id "
            "(new_command_id())."
        )


class StoreClosedError(EventStoreError, RuntimeError):
    def __init__(self, store: str) -> None:
        self.store = store
        super().__init__(
            f"event store {store!r} is closed; open a new store object to use it again"
        )


class StorageError(EventStoreError):
    """The database file could not be used as asked; ``path`` names it, ``cause`` says why.

    Raised in place of the bare ``sqlite3`` error (kept as ``__cause__``), which names no file.
    """

    def __init__(self, path: str, cause: str, fix: str) -> None:
        self.path = path
        self.cause = cause
        self.fix = fix
        super().__init__(f"event store {path!r}: {cause}. {fix}")


#: The table ``eventstore copy`` keeps in a destination until the copy has finished.
COPY_MARK = "eventstore_copy"


class InterruptedCopyError(StorageError):
    """The store (a SQLite file, a PostgreSQL schema) holds a copy ``eventstore copy`` has
    not finished (its mark table is there): its events stop short of the source's, so
    it is not a store to use (on PostgreSQL its position sequence is not set yet
    either). ``source`` names the copy's source (redacted), ``head`` the last position
    copied so far."""

    def __init__(self, path: str, source: str, head: int) -> None:
        self.source = source
        self.head = head
        super().__init__(
            path,
            f"it holds a copy from {source!r} that has not finished (eventstore copy "
            f"stopped, or still runs, after position {head}; the table {COPY_MARK} marks "
            "it), so it is not a whole store yet and its next positions would collide with "
            "the events still to come",
            "Let the copy finish, or resume it by running the same command again "
            "(eventstore copy SOURCE DESTINATION: it goes on after the last chunk); or delete "
            "it (the file, or the schema) and copy anew.",
        )


class ReadOnlyStoreError(StorageError):
    """The file, or the folder holding it, cannot be written by this process."""

    def __init__(self, path: str, folder: str = "") -> None:
        self.folder = folder
        if folder:
            super().__init__(
                path,
                f"its folder {folder!r} is read-only, and SQLite must create the write-ahead "
                "log and shared-memory files beside the database (even to read it)",
                "Make the folder writable for this user, or move the file to a writable folder.",
            )
        else:
            super().__init__(
                path,
                "the database file is read-only (its permissions, or it was opened with "
                "mode=ro), so nothing can be written",
                "Make the file writable for this user, or open it read-only and only read.",
            )


class NotADatabaseError(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            "the file is not a SQLite database (or is encrypted)",
            "Check the path: give a new file name to create a store, or an event store's file.",
        )


class CorruptDatabaseError(StorageError):
    """The file is damaged (truncated, overwritten); ``detail`` is what SQLite reported."""

    def __init__(self, path: str, detail: str = "database disk image is malformed") -> None:
        self.detail = detail
        super().__init__(
            path,
            f"the database file is damaged ({detail}); it may have been truncated or "
            "partly overwritten",
            "Restore it from a backup; SQLite's .recover command can salvage what is left.",
        )


class StorageFullError(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            "the disk (or the database's size limit) is full, so the write was rolled "
            "back and nothing of it was stored",
            "Free space on the disk holding the file and retry: the store works again "
            "once there is room.",
        )


class StoreBusyError(StorageError):
    """Another connection or process held a lock on the database for longer than the
    ``busy_timeout`` (SQLite's ``SQLITE_BUSY``; ``SQLITE_LOCKED`` too): SQLite gave up
    waiting and nothing was written. ``busy_timeout`` is that wait in seconds,
    ``detail`` SQLite's own words. A retry with the same command id is applied once.
    """

    def __init__(
        self,
        path: str,
        busy_timeout: float | None = None,
        detail: str = "database is locked",
        *,
        in_process: bool = False,
    ) -> None:
        self.busy_timeout = busy_timeout
        self.detail = detail
        self.in_process = in_process
        if in_process:  # a thread of this process held the store's writer (see detail)
            super().__init__(
                path,
                f"this call waited {busy_timeout:g} s for the store's writer and gave up "
                f"({detail}); nothing of it was done",
                "Retry; if it happens again, look for a thread that holds the store's "
                "writer while it waits for another one.",
            )
            return
        waited = (
            f"busy_timeout ({busy_timeout:g} s)" if busy_timeout is not None else "busy_timeout"
        )
        super().__init__(
            path,
            f"another connection or process held a lock on the database for longer than "
            f"{waited}, so SQLite gave up waiting ({detail}) and nothing was written",
            "Retry (a command with the same command id: it is applied once), or open the "
            "store or read model with a longer busy_timeout (busy_timeout=seconds) if the "
            "other writer holds the lock this long on purpose.",
        )


class PayloadTooLargeError(StorageError, ValueError):
    """A value (an event's data or metadata) over SQLite's size limit (SQLITE_LIMIT_LENGTH)."""

    def __init__(self, path: str, limit: int, size: int = 0, aggregate_id: str = "") -> None:
        self.limit = limit
        self.size = size
        self.aggregate_id = aggregate_id
        what = f"an event of aggregate {aggregate_id!r}" if aggregate_id else "a value"
        of = f" of {size:,} bytes" if size else ""
        bound = f" of {limit:,} bytes" if limit else ""
        super().__init__(
            path,
            f"{what}{of} is larger than SQLite's limit{bound} per value, so nothing was written",
            "Store large payloads elsewhere (a file or object store) and put a reference "
            "in the event.",
        )


class IntegerRangeError(StorageError, ValueError):
    """A position, version or count beyond the 64-bit integers (-2**63 to 2**63 - 1), which
    both stores hold (SQLite's INTEGER, PostgreSQL's bigint): the message names no adapter,
    except SQLite's own refusal of an integer it cannot bind (``value`` None)."""

    def __init__(
        self, path: str, name: str = "", value: int | None = None, events: int = 0
    ) -> None:
        self.name = name
        self.value = value
        what = f"{name}={value}" if name else "a position, version or count"
        if events:  # an append's last version: expected_version + the events
            what += f" plus {events} event{'s' if events > 1 else ''}"
        if value is None:  # only SQLite raises it so: an integer its driver could not bind
            beyond = "is beyond the 64-bit integers SQLite holds (-2**63 to 2**63 - 1)"
        elif value < 0:  # the stores' own checks, on either adapter: no adapter named
            beyond = "is below -2**63, the smallest 64-bit integer the store holds"
        else:
            beyond = (
                "is 2**63 or more, beyond the largest 64-bit integer the store holds (2**63 - 1)"
            )
        super().__init__(
            path,
            f"{what} {beyond}",
            "Pass a position or version the store handed out; they are always from 0 to 2**63 - 1.",
        )


class ForeignDatabaseError(StorageError):
    """A database of another application (tables, but not eventstore's mark)."""

    def __init__(self, path: str, found: str, reason: str = "", fix: str = "") -> None:
        self.found = found
        super().__init__(
            path,
            reason
            or f"the file holds another application's database ({found}), without "
            "eventstore's mark (PRAGMA application_id), so eventstore will not add its "
            "tables to it",
            fix or "Give the event store (or read model) a file of its own: a new path.",
        )


class SchemaVersionError(StorageError, RuntimeError):
    """A file written by a newer eventstore, whose schema this version does not know."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            path,
            f"it has schema version {found}, newer than this version of eventstore "
            f"understands ({supported})",
            "Upgrade eventstore to open it (pip install -U eventstore).",
        )


class SchemaMigrationNeededError(SchemaVersionError, ReadOnlyStoreError):
    """A file of an older schema opened read-only: this version reads only its own schema,
    and bringing the file up to it writes (``found`` is the file's, ``supported`` ours).

    Both a ``SchemaVersionError`` and a ``ReadOnlyStoreError``; nothing was written.
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        self.folder = ""
        StorageError.__init__(
            self,
            path,
            f"the file has schema version {found}, older than this version of eventstore "
            f"reads ({supported}); migrating it to {supported} writes to the file, and it is "
            "read-only (opened with mode=ro, or by its permissions), so it was not opened",
            "Open a writable copy of the file (copy it, with its -wal file if there is one, "
            "and open the copy: it is migrated on open and the original stays as it was), "
            "or make the file writable to migrate it in place.",
        )


class StoreURLError(EventStoreError, ValueError):
    """A store URL that names no known adapter, or that its adapter cannot read."""

    def __init__(self, url: str, cause: str, fix: str) -> None:
        self.url = redact_url(url)
        self.cause = cause
        self.fix = fix
        super().__init__(f"cannot open event store {self.url!r}: {cause}. {fix}")


class AdapterUnavailableError(StoreURLError):
    """The URL's scheme is known, but its adapter is not installed (or not built yet)."""

    def __init__(self, url: str, adapter: str, module: str) -> None:
        self.adapter = adapter
        self.module = module
        super().__init__(
            url,
            f"the {adapter} adapter ({module}) is not available in this installation",
            "Use a SQLite store (sqlite:///events.db, or a plain path) until the "
            f"{adapter} adapter is installed.",
        )


class EventDecodeError(EventStoreError):
    def __init__(self, event_id: str, position: int, event_type: str, cause: str = "") -> None:
        self.event_id = event_id
        self.position = position
        self.event_type = event_type
        why = cause or "no message class is registered for this event type"
        super().__init__(
            f"cannot decode event {event_id!r} at position {position} of type {event_type!r}: "
            f"{why}. Register the message class (or an upcaster from this type) with the "
            "repository's event types."
        )


class AppError(EventStoreError):
    """A business error that crosses a wire (DESIGN decision 11).

    ``code`` is machine-readable (``INSUFFICIENT_FUNDS``), ``message`` says what
    went wrong, ``solution`` what the caller can do about it.
    """

    def __init__(
        self,
        code: str,
        message: str,
        solution: str = "",
        details: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.solution = solution
        self.details: dict[str, str] = dict(details or {})
        text = f"[{code}] {message}"
        if solution:
            text += f" {solution}"
        super().__init__(text)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.code, self.message, self.solution, self.details))


class AuthenticationError(AppError):
    """The request carries no valid credentials (``UNAUTHENTICATED``): nothing ran.

    ``reason`` says what was wrong (no token, expired, wrong audience) without
    echoing the credential itself.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            "UNAUTHENTICATED",
            f"the request is not authenticated: {reason}",
            "Send valid credentials (a bearer token or an API key) with the request.",
            {"reason": reason},
        )


class PermissionDeniedError(AppError):
    """The principal has none of the roles the subject needs (``PERMISSION_DENIED``)."""

    def __init__(self, principal_id: str, subject: str, roles: tuple[str, ...] = ()) -> None:
        self.principal_id = principal_id
        self.subject = subject
        self.roles = roles
        needed = ", ".join(roles) if roles else "none granted (no rule for this subject)"
        super().__init__(
            "PERMISSION_DENIED",
            f"principal {principal_id!r} may not call {subject}: roles allowed: {needed}",
            "Ask for a role the subject allows, or add a rule for the subject to "
            "authorization_middleware.",
            {"principal_id": principal_id, "subject": subject},
        )


class InvalidTenantError(AppError, ValueError):
    """A tenant id outside ``^[a-z0-9][a-z0-9_-]{0,63}$`` (``INVALID_TENANT``)."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(
            "INVALID_TENANT",
            f"tenant id {tenant_id[:80]!r} is not valid: tenant ids are 1 to 64 lowercase "
            "letters, digits, '_' or '-', starting with a letter or digit",
            "Use a tenant id matching ^[a-z0-9][a-z0-9_-]{0,63}$ (lowercase: 'Acme' and "
            "'acme' would be one file on a case-insensitive filesystem).",
            {"tenant_id": tenant_id[:80]},
        )


class TenantForbiddenError(AppError):
    """The principal asked to act for a tenant it does not belong to (``TENANT_FORBIDDEN``)."""

    def __init__(self, principal_id: str, tenant_id: str) -> None:
        self.principal_id = principal_id
        self.tenant_id = tenant_id
        super().__init__(
            "TENANT_FORBIDDEN",
            f"principal {principal_id!r} may not act for tenant {tenant_id!r}",
            "Send the request for a tenant the principal belongs to (its token's tenants).",
            {"principal_id": principal_id, "tenant_id": tenant_id},
        )


class TenantMismatchError(AppError):
    """An aggregate of another tenant, or any aggregate with no tenant in context.

    Raised by a repository with ``tenant_isolation=True`` before it touches the
    store (``TENANT_MISMATCH``). ``tenant_id`` is the context's tenant ("" for
    none); the other tenant's name is never part of the error.
    """

    def __init__(self, aggregate_id: str, tenant_id: str, reason: str) -> None:
        self.aggregate_id = aggregate_id
        self.tenant_id = tenant_id
        self.reason = reason
        what = f"aggregate {aggregate_id!r}" if aggregate_id else "this call"
        if tenant_id:
            fix = (
                "Use plain aggregate ids of the request's own tenant (no '::'), inside "
                "with_tenant(...) (network hosts set it from the authenticated principal)."
            )
        else:
            fix = (
                "Name the tenant: a client sends the Es-Tenant-Id header (metadata "
                "tenant_id) naming one of its principal's tenants (needed when the principal "
                "has several); code runs inside with_tenant(tenant)."
            )
        super().__init__(
            "TENANT_MISMATCH",
            f"{what} cannot be used in tenant {tenant_id or '(none)'!r}: {reason}",
            fix,
            {"aggregate_id": aggregate_id, "tenant_id": tenant_id},
        )


class ValidationError(AppError, ValueError):
    """The request breaks its message's validation rules (``VALIDATION_FAILED``).

    ``violations`` lists ``(field, rule, message)`` for every violated rule, so a
    caller can fix them all at once; the handler did not run.
    """

    def __init__(self, message_type: str, violations: list[tuple[str, str, str]]) -> None:
        self.message_type = message_type
        self.violations = list(violations)
        listed = "; ".join(f"{f}: {m} ({r})" for f, r, m in self.violations)
        details = {"message_type": message_type}
        for field, rule, _ in self.violations:  # a field breaking two rules names both
            key = f"field.{field}"
            details[key] = f"{details[key]},{rule}" if key in details else rule
        super().__init__(
            "VALIDATION_FAILED",
            f"{message_type} is not valid: {listed}",
            "Correct the fields listed and send the request again.",
            details,
        )
