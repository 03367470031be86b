"""The bank account, end to end: generated code, handlers, client, SQLite.

Run it from the repository root with ``python -m examples.bankaccount`` (or
``python examples/bankaccount/main.py``). The code in ``generated/`` was
written by ``eventstore generate proto/examples/bank --out
examples/bankaccount/generated``; the tests check it is up to date.
"""
