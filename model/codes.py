"""Every HRESULT and RPC_STATUS callgate speaks of, with its numeric value: the one place codes live.

Values come from spec/DOMAIN.md section 3 (checked there against Wine's and mingw-w64's headers).
HRESULTs are stored as unsigned 32-bit numbers, the form adapters send on the wire; `signed()`
gives the signed reading. Names are Microsoft's, verbatim.

Three symbols the documentation uses are defined by no header (DOMAIN.md D-01, D-02, D-03):
`RPC_E_CALL_PENDING`, `RPC_E_CALLPENDING` and `RPC_S_CALL_CANCELED` (one L). They have no value,
so they are not `Code`s; they are listed in `UNDEFINED_SYMBOLS` with the rule that uses each and
the variation point in `callgate.model.variations` that decides what an implementation may return instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Family(Enum):
    """Which numbering a code belongs to."""

    HRESULT = "HRESULT"
    RPC_STATUS = "RPC_STATUS"


@dataclass(frozen=True, order=True)
class Code:
    """A named return code. `value` is unsigned 32-bit; `aliases` are other names of the same value."""

    value: int
    name: str
    family: Family
    aliases: tuple[str, ...] = ()

    @property
    def is_failure(self) -> bool:
        """True for a failure: an HRESULT with the severity bit set, or a non-zero RPC_STATUS."""
        if self.family is Family.HRESULT:
            return bool(self.value & 0x80000000)
        return self.value != 0

    def signed(self) -> int:
        """The value read as a signed 32-bit integer (how HRESULTs print in C)."""
        return self.value - (1 << 32) if self.value & 0x80000000 else self.value

    def __str__(self) -> str:
        return f"{self.name} (0x{self.value:08X})" if self.family is Family.HRESULT \
            else f"{self.name} ({self.value})"


def _h(value: int, name: str, *aliases: str) -> Code:
    return Code(value, name, Family.HRESULT, aliases)


def _r(value: int, name: str, *aliases: str) -> Code:
    return Code(value, name, Family.RPC_STATUS, aliases)


S_OK = _h(0x00000000, "S_OK")
E_NOTIMPL = _h(0x80004001, "E_NOTIMPL")
E_NOINTERFACE = _h(0x80004002, "E_NOINTERFACE")
E_FAIL = _h(0x80004005, "E_FAIL")
E_UNEXPECTED = _h(0x8000FFFF, "E_UNEXPECTED")
E_ACCESSDENIED = _h(0x80070005, "E_ACCESSDENIED")
E_OUTOFMEMORY = _h(0x8007000E, "E_OUTOFMEMORY")
E_INVALIDARG = _h(0x80070057, "E_INVALIDARG")
REGDB_E_CLASSNOTREG = _h(0x80040154, "REGDB_E_CLASSNOTREG")
RPC_E_CALL_CANCELED = _h(0x80010002, "RPC_E_CALL_CANCELED")
RPC_E_OUT_OF_RESOURCES = _h(0x80010101, "RPC_E_OUT_OF_RESOURCES")
RPC_E_DISCONNECTED = _h(0x80010108, "RPC_E_DISCONNECTED")
RPC_S_CALLPENDING = _h(0x80010115, "RPC_S_CALLPENDING")
RPC_E_CALL_COMPLETE = _h(0x80010117, "RPC_E_CALL_COMPLETE")
RPC_E_TIMEOUT = _h(0x8001011F, "RPC_E_TIMEOUT")
RPC_E_NO_SYNC = _h(0x80010120, "RPC_E_NO_SYNC")
CO_E_CANCEL_DISABLED = _h(0x80010140, "CO_E_CANCEL_DISABLED")
RPC_E_UNEXPECTED = _h(0x8001FFFF, "RPC_E_UNEXPECTED")
# HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED): one reading of the undefined RPC_S_CALL_CANCELED (D-03).
HRESULT_FROM_WIN32_RPC_S_CALL_CANCELLED = _h(0x8007071A, "HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED)")

RPC_S_OK = _r(0, "RPC_S_OK", "ERROR_SUCCESS")
RPC_S_OUT_OF_MEMORY = _r(14, "RPC_S_OUT_OF_MEMORY", "ERROR_OUTOFMEMORY", "RPC_X_NO_MEMORY")
RPC_S_INVALID_ARG = _r(87, "RPC_S_INVALID_ARG", "ERROR_INVALID_PARAMETER")
RPC_S_ASYNC_CALL_PENDING = _r(997, "RPC_S_ASYNC_CALL_PENDING", "ERROR_IO_PENDING")
RPC_S_INVALID_BINDING = _r(1702, "RPC_S_INVALID_BINDING")
RPC_S_ALREADY_REGISTERED = _r(1711, "RPC_S_ALREADY_REGISTERED")
RPC_S_OUT_OF_RESOURCES = _r(1721, "RPC_S_OUT_OF_RESOURCES")
RPC_S_NO_CALL_ACTIVE = _r(1725, "RPC_S_NO_CALL_ACTIVE")
RPC_S_CALL_FAILED = _r(1726, "RPC_S_CALL_FAILED")
RPC_S_CALL_FAILED_DNE = _r(1727, "RPC_S_CALL_FAILED_DNE")
RPC_S_PROTOCOL_ERROR = _r(1728, "RPC_S_PROTOCOL_ERROR")
RPC_S_CANNOT_SUPPORT = _r(1764, "RPC_S_CANNOT_SUPPORT")
RPC_S_INTERNAL_ERROR = _r(1766, "RPC_S_INTERNAL_ERROR")
RPC_X_BAD_STUB_DATA = _r(1783, "RPC_X_BAD_STUB_DATA")
RPC_S_CALL_IN_PROGRESS = _r(1791, "RPC_S_CALL_IN_PROGRESS")
RPC_S_CALL_CANCELLED = _r(1818, "RPC_S_CALL_CANCELLED")
RPC_S_NOT_CANCELLED = _r(1826, "RPC_S_NOT_CANCELLED")
RPC_X_WRONG_STUB_VERSION = _r(1829, "RPC_X_WRONG_STUB_VERSION")
RPC_X_INVALID_PIPE_OBJECT = _r(1830, "RPC_X_INVALID_PIPE_OBJECT")
RPC_X_WRONG_PIPE_ORDER = _r(1831, "RPC_X_WRONG_PIPE_ORDER", "RPC_X_INVALID_PIPE_OPERATION")
RPC_X_WRONG_PIPE_VERSION = _r(1832, "RPC_X_WRONG_PIPE_VERSION")
RPC_S_SEND_INCOMPLETE = _r(1913, "RPC_S_SEND_INCOMPLETE")
RPC_S_INVALID_ASYNC_HANDLE = _r(1914, "RPC_S_INVALID_ASYNC_HANDLE")
RPC_S_INVALID_ASYNC_CALL = _r(1915, "RPC_S_INVALID_ASYNC_CALL")
RPC_X_PIPE_CLOSED = _r(1916, "RPC_X_PIPE_CLOSED")
RPC_X_PIPE_DISCIPLINE_ERROR = _r(1917, "RPC_X_PIPE_DISCIPLINE_ERROR")
RPC_X_PIPE_EMPTY = _r(1918, "RPC_X_PIPE_EMPTY")
# Application-level codes the harness's test server uses for RpcAsyncAbortCall and for raising
# (any non-zero value is allowed, RPC-SRV-ABORT-01); these two are real Win32 codes.
ERROR_ACCESS_DENIED = _r(5, "ERROR_ACCESS_DENIED")
ERROR_NOT_ENOUGH_MEMORY = _r(8, "ERROR_NOT_ENOUGH_MEMORY")

ALL: tuple[Code, ...] = tuple(sorted(
    (v for v in dict(globals()).values() if isinstance(v, Code)),
    key=lambda c: (c.family.value, c.value),
))

# Non-error values that travel in outputs.
RPC_ASYNC_STATE_SIGNATURE = 0x43595341
WAIT_OBJECT_0 = 0
WAIT_ABANDONED_0 = 0x80
WAIT_IO_COMPLETION = 0xC0
INFINITE = 0xFFFFFFFF


@dataclass(frozen=True)
class UndefinedSymbol:
    """A code name the documentation uses that no header defines: it has no value to compare with."""

    name: str
    rules: tuple[str, ...]
    discrepancy: str
    variation: str
    note: str


UNDEFINED_SYMBOLS: tuple[UndefinedSymbol, ...] = (
    UndefinedSymbol(
        "RPC_E_CALL_PENDING", ("COM-BEGIN-02", "COM-BEGIN-03", "COM-CANCEL-03"), "D-02",
        "begin_pending_code",
        "Documented result of Begin_ while a call is in flight; no header defines it. The model "
        "expects a failure HRESULT; an implementation may pin RPC_S_CALLPENDING.",
    ),
    UndefinedSymbol(
        "RPC_E_CALLPENDING", ("COM-WAIT-04",), "D-01", "call_wait_timeout_code",
        "A typo on the objidlbase.h ISynchronize::Wait page; the model admits the two real codes "
        "the other pages give (RPC_S_CALLPENDING, RPC_E_TIMEOUT).",
    ),
    UndefinedSymbol(
        "RPC_S_CALL_CANCELED", ("COM-CANCEL-06", "COM-CANCEL-09"), "D-03", "cancelled_code",
        "One L; undefined. The model admits RPC_E_CALL_CANCELED (0x80010002) and "
        "HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED) (0x8007071A).",
    ),
)

_BY_VALUE: dict[tuple[Family, int], Code] = {}
_BY_NAME: dict[str, Code] = {}
for _code in ALL:
    _BY_VALUE.setdefault((_code.family, _code.value), _code)
    _BY_NAME[_code.name] = _code
    for _alias in _code.aliases:
        _BY_NAME[_alias] = _code


def by_name(name: str) -> Code:
    """The code called `name` (or one of its aliases). Raises KeyError naming the undefined symbols."""
    try:
        return _BY_NAME[name]
    except KeyError:
        undefined = {u.name: u for u in UNDEFINED_SYMBOLS}
        if name in undefined:
            raise KeyError(f"{name} is used by the documentation but defined by no header "
                           f"({undefined[name].discrepancy}); see variation point "
                           f"{undefined[name].variation!r}") from None
        raise KeyError(f"unknown code name {name!r}") from None


# Values that are no return code of the modelled APIs but that adapters report as an outcome
# (the Wine adapter: a call that did not return within its bound is WAIT_TIMEOUT with
# `returned: false`; a guarded call that raised is its exception code with `raised: true`). Names
# for reports only: the model never allows them, so they are not in ALL.
REPORTED_NAMES: dict[int, str] = {
    258: "WAIT_TIMEOUT",
    0xC0000005: "STATUS_ACCESS_VIOLATION",
    0xC0000139: "STATUS_ENTRYPOINT_NOT_FOUND",
    0xC0000374: "STATUS_HEAP_CORRUPTION",
    0xC0000409: "STATUS_STACK_BUFFER_OVERRUN",
}


def describe(value: int, family: Family | None = None) -> str:
    """A human name for a numeric code ("NAME (value)"), or its number alone when callgate knows
    no name for it (hex when above 0xFFFF)."""
    value &= 0xFFFFFFFF
    families = [family] if family else [Family.HRESULT, Family.RPC_STATUS]
    for fam in families:
        code = _BY_VALUE.get((fam, value))
        if code is not None:
            return str(code)
    number = f"0x{value:08X}" if value > 0xFFFF else str(value)
    return f"{REPORTED_NAMES[value]} ({number})" if value in REPORTED_NAMES else number
