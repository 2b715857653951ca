"""Every code in model/codes.py has the value DOMAIN.md section 3 gives it."""

from __future__ import annotations

import re

import pytest

from callgate.model import codes


def _section3(domain_text: str) -> dict[str, int]:
    start = domain_text.index("## 3. Return codes")
    end = domain_text.index("Related non-error values")
    values: dict[str, int] = {}
    for line in domain_text[start:end].splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or not cells[2].startswith("0x"):
            continue
        hexes = re.findall(r"0x[0-9A-Fa-f]+", cells[2])
        names = re.findall(r"[A-Z][A-Z0-9_]+(?:\([A-Z_]+\))?", cells[1])
        if len(hexes) == 1:
            for name in names:
                values[name] = int(hexes[0], 16)
        else:  # "RPC_X_PIPE_CLOSED / _DISCIPLINE_ERROR / _EMPTY | 0x77C / 0x77D / 0x77E"
            stem = names[0].rsplit("_", 1)[0]
            parts = [names[0]] + [stem + p for p in re.findall(r"/ (_[A-Z_]+)", cells[1])]
            values.update(zip(parts, (int(h, 16) for h in hexes), strict=False))
    return values


def test_every_documented_code_has_its_documented_value(domain_text: str) -> None:
    table = _section3(domain_text)
    assert len(table) > 40
    checked = 0
    for code in codes.ALL:
        for name in (code.name, *code.aliases):
            if name in table:
                assert table[name] == code.value, name
                checked += 1
    assert checked >= 40


def test_no_documented_code_is_missing(domain_text: str) -> None:
    table = _section3(domain_text)
    names = {n for c in codes.ALL for n in (c.name, *c.aliases)}
    missing = sorted(n for n in table if n not in names and not n.startswith("HRESULT_FROM_WIN32"))
    assert missing == []


@pytest.mark.parametrize("symbol", ["RPC_E_CALL_PENDING", "RPC_E_CALLPENDING", "RPC_S_CALL_CANCELED"])
def test_undefined_symbols_are_refused_with_their_variation_point(symbol: str) -> None:
    with pytest.raises(KeyError, match="defined by no header"):
        codes.by_name(symbol)


def test_rpc_s_callpending_is_a_failure_despite_its_name() -> None:
    assert codes.RPC_S_CALLPENDING.is_failure
    assert codes.RPC_S_CALLPENDING.signed() == -2147417835
    assert not codes.S_OK.is_failure


def test_describe_names_known_values_and_shows_hex_for_unknown() -> None:
    assert codes.describe(0x80010117).startswith("RPC_E_CALL_COMPLETE")
    assert codes.describe(997, codes.Family.RPC_STATUS).startswith("RPC_S_ASYNC_CALL_PENDING")
    assert codes.describe(0x8BADF00D) == "0x8BADF00D"
    # Values adapters report that are no return code of the modelled APIs: named, not modelled.
    assert codes.describe(258, codes.Family.RPC_STATUS) == "WAIT_TIMEOUT (258)"
    assert codes.describe(0xC0000005) == "STATUS_ACCESS_VIOLATION (0xC0000005)"
    assert all(c.value not in codes.REPORTED_NAMES for c in codes.ALL)
