"""Compiled ``eventsourcing/*.proto``.

Regenerate with ``python -m eventstore.codegen.bootstrap``.
"""
