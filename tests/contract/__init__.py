"""The storage contract: one suite that every event store adapter must pass."""
