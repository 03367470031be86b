from eventstore.proto.eventsourcing import options_pb2 as _options_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_OPEN: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_CLOSED: _ClassVar[AccountStatus]
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACCOUNT_STATUS_OPEN: AccountStatus
ACCOUNT_STATUS_CLOSED: AccountStatus

class AccountState(_message.Message):
    __slots__ = ("account_id", "owner", "balance", "status")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    owner: str
    balance: int
    status: AccountStatus
    def __init__(self, account_id: _Optional[str] = ..., owner: _Optional[str] = ..., balance: _Optional[int] = ..., status: _Optional[_Union[AccountStatus, str]] = ...) -> None: ...

class AccountOpenedEvent(_message.Message):
    __slots__ = ("owner", "initial_deposit")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    owner: str
    initial_deposit: int
    def __init__(self, owner: _Optional[str] = ..., initial_deposit: _Optional[int] = ...) -> None: ...

class MoneyDepositedEvent(_message.Message):
    __slots__ = ("amount",)
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    amount: int
    def __init__(self, amount: _Optional[int] = ...) -> None: ...

class MoneyWithdrawnEvent(_message.Message):
    __slots__ = ("amount",)
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    amount: int
    def __init__(self, amount: _Optional[int] = ...) -> None: ...

class AccountClosedEvent(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenAccountCommand(_message.Message):
    __slots__ = ("account_id", "owner", "initial_deposit")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    owner: str
    initial_deposit: int
    def __init__(self, account_id: _Optional[str] = ..., owner: _Optional[str] = ..., initial_deposit: _Optional[int] = ...) -> None: ...

class OpenAccountResponse(_message.Message):
    __slots__ = ("account_id", "version")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    version: int
    def __init__(self, account_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DepositCommand(_message.Message):
    __slots__ = ("account_id", "amount")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    amount: int
    def __init__(self, account_id: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class WithdrawCommand(_message.Message):
    __slots__ = ("account_id", "amount")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    amount: int
    def __init__(self, account_id: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class BalanceResponse(_message.Message):
    __slots__ = ("balance", "version")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    balance: int
    version: int
    def __init__(self, balance: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class CloseAccountCommand(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class CloseAccountResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class GetAccountQuery(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class AccountView(_message.Message):
    __slots__ = ("account_id", "owner", "balance", "status", "version")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    owner: str
    balance: int
    status: AccountStatus
    version: int
    def __init__(self, account_id: _Optional[str] = ..., owner: _Optional[str] = ..., balance: _Optional[int] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., version: _Optional[int] = ...) -> None: ...
