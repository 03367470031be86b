"""The middlewares that ship (the code lives in ``eventstore.core.middleware``; it is pure)."""

from .core.middleware import (
    Validator,
    Violation,
    authorization_middleware,
    default_middlewares,
    logging_middleware,
    observes_refusals,
    recovery_middleware,
    register_validator,
    require_metadata,
    require_principal,
    unregister_validator,
    validation_middleware,
    validators_for,
)

__all__ = [
    "Validator",
    "Violation",
    "authorization_middleware",
    "default_middlewares",
    "logging_middleware",
    "observes_refusals",
    "recovery_middleware",
    "register_validator",
    "require_metadata",
    "require_principal",
    "unregister_validator",
    "validation_middleware",
    "validators_for",
]
