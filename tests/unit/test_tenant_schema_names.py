"""Schema-per-tenant names: distinct tenant ids never share a PostgreSQL schema.

A tenant can choose its own id (a sign-up form), so an id must not be able to spell
another's hashed name: ``acme_corp_f13fa37c`` named ``acme-corp``'s schema before.
"""

from __future__ import annotations

import hashlib
import random
import string

from eventstore.core.tenancy import TENANT_ID_PATTERN
from eventstore.postgres.store import SCHEMA_NAME
from eventstore.tenancy import schema_name

PATTERN = "t_{tenant}"


def _old_hashed_name(tenant: str) -> str:
    """What the previous rule gave an id with '-' (8 hex after one '_')."""
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"{PATTERN.replace('{tenant}', tenant.replace('-', '_'))[:54]}_{digest}"


def test_an_id_spelling_another_ids_hashed_name_gets_a_schema_of_its_own() -> None:
    for victim in ("acme-corp", "x" * 62, "a-" * 31 + "z"):
        forged = _old_hashed_name(victim).removeprefix("t_")
        assert TENANT_ID_PATTERN.match(forged), forged  # a valid tenant id
        assert schema_name(PATTERN, forged) != schema_name(PATTERN, victim)


def test_safe_ids_keep_their_name_and_others_get_a_hash() -> None:
    assert schema_name(PATTERN, "acme_corp") == "t_acme_corp"
    assert schema_name(PATTERN, "acme") == "t_acme"
    hashed = schema_name(PATTERN, "acme-corp")
    assert hashed.startswith("t_acme_corp__") and len(hashed) == len("t_acme_corp__") + 16
    for tenant in ("acme__corp", "acme_", "a" * 64):
        assert "__" in schema_name(PATTERN, tenant)


def test_names_are_valid_distinct_and_stable_over_many_ids() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_lowercase + string.digits + "_-"
    ids = {"a", "a_b", "a-b", "a__b", "a_b_", "z" * 64}
    while len(ids) < 3000:
        size = rng.choice([1, 2, 3, 8, 40, 61, 62, 63, 64])
        ids.add(rng.choice(string.ascii_lowercase) + "".join(rng.choices(alphabet, k=size - 1)))
    names = {tenant: schema_name(PATTERN, tenant) for tenant in ids}
    assert all(SCHEMA_NAME.match(name) for name in names.values())
    assert len(set(names.values())) == len(ids)
    assert all(schema_name(PATTERN, t) == name for t, name in names.items())
