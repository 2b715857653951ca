"""The rule obligations: every in-scope MUST rule of spec/DOMAIN.md restated as a property, apart
from the tables (DESIGN.md principle 10), the reasons for the few that cannot be stated, the known
findings, and `check_obligations()`.

* `core`: the language (`Obligation`, `Always`, `Whenever`, `Reach`, `Now`, `After`, `Observer`).
* `com_call`, `sync_object`, `cowait`, `rpc_handle`, `thread_cancel`, `rpc_notif`, `rpc_order`,
  `rpc_pipe`:
  one module per family (or section), each with its observer and its obligations, written
  from the rules' text.
* `checker`: exhaustive enumeration of each machine's reachable states under every pinning, and
  the results in the shape of `callgate model check`'s other checks.

Importing this package does not load Z3 or networkx: `callgate model rules` reads the obligation
list from here; `check_obligations` loads the checker when called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from callgate.model.obligations import (
    com_call,
    cowait,
    rpc_handle,
    rpc_notif,
    rpc_order,
    rpc_pipe,
    sync_object,
    thread_cancel,
)
from callgate.model.obligations.core import (
    After,
    Always,
    Now,
    Obligation,
    ObligationKind,
    Observer,
    Reach,
    Whenever,
)
from callgate.model.rules import Level, catalogue
from callgate.model.transitions import Machine

if TYPE_CHECKING:
    from callgate.model.proofs.results import CheckResult

ALL: tuple[Obligation, ...] = (*com_call.OBLIGATIONS, *sync_object.OBLIGATIONS,
                               *cowait.OBLIGATIONS, *rpc_handle.OBLIGATIONS,
                               *thread_cancel.OBLIGATIONS, *rpc_notif.OBLIGATIONS, *rpc_order.OBLIGATIONS,
                               *rpc_pipe.OBLIGATIONS)
BY_ID: dict[str, Obligation] = {o.id: o for o in ALL}

OBSERVERS: dict[str, Observer[Any]] = {
    com_call.OBSERVER.machine: com_call.OBSERVER,
    **{o.machine: o for o in sync_object.OBSERVERS},
    cowait.OBSERVER.machine: cowait.OBSERVER,
    rpc_handle.OBSERVER.machine: rpc_handle.OBSERVER,
    thread_cancel.OBSERVER.machine: thread_cancel.OBSERVER,
    rpc_notif.OBSERVER.machine: rpc_notif.OBSERVER,
    rpc_order.OBSERVER.machine: rpc_order.OBSERVER,
    rpc_pipe.OBSERVER.machine: rpc_pipe.OBSERVER,
}

# In-scope MUST rules that no obligation states, each with the reason it cannot be stated in the
# vocabulary of states and operations. The acceptance allows at most ten.
UNSTATED: dict[str, str] = {
    "COM-WAIT-09": "a constraint on the caller's argument (dwFlags comes from COWAIT_FLAGS): every "
                   "Wait the harness issues passes COWAIT_DEFAULT (0); no state or result depends "
                   "on it",
    "COM-CCAN-01": "that these functions leave asynchronous calls alone needs an asynchronous "
                   "call on the same client thread: the thread_cancel machine models the "
                   "thread's synchronous calls only",
    "RPC-MISC-04": "a statement of design (COM's Async interfaces are how COM makes asynchronous "
                   "RPC calls), not a result: the com_call machine's Begin_ row cites it, and "
                   "the COM-BEGIN obligations check what Begin_ does",
    "COM-CONT-07": "the apartment behaviour of WaitMultiple (modal loop on an STA, blocking on an "
                   "MTA): the container machine has no STA probe, so no operation observes it",
}

# Obligations that fail on today's tables: each a finding against a table row (the rule, the
# obligation and the counterexample are in the report), kept here until the table fix is merged.
KNOWN_FINDINGS: dict[str, str] = {}


def obligations_for(rule_id: str) -> list[str]:
    """The ids of the obligations that cite a rule."""
    return [o.id for o in ALL if rule_id in o.rules]


def must_rules_in_scope() -> list[str]:
    """The in-scope rules with a MUST tag (split rules included)."""
    return [r.id for r in catalogue().values()
            if r.in_scope and Level.MUST in {r.level, *r.split_levels}]


def coverage_problems(obligations: Iterable[Obligation] = ALL,
                      unstated: Mapping[str, str] = UNSTATED) -> list[str]:
    """What keeps the obligations from covering the catalogue: a cited unknown rule, an in-scope
    MUST rule with neither an obligation nor a reason, a reason for a rule that has an obligation,
    more than ten reasons, a repeated id."""
    rules = catalogue()
    problems: list[str] = []
    seen: set[str] = set()
    cited: set[str] = set()
    for o in obligations:
        if o.id in seen:
            problems.append(f"obligation id {o.id} appears twice")
        seen.add(o.id)
        for rule_id in o.rules:
            if rule_id not in rules:
                problems.append(f"obligation {o.id} cites unknown rule {rule_id}")
            cited.add(rule_id)
    for rule_id in must_rules_in_scope():
        if rule_id not in cited and rule_id not in unstated:
            problems.append(f"{rule_id} is an in-scope MUST rule with no obligation and no reason")
        if rule_id in cited and rule_id in unstated:
            problems.append(f"{rule_id} has an obligation but is also listed as unstated")
    for rule_id in unstated:
        if rule_id not in rules or not rules[rule_id].in_scope:
            problems.append(f"unstated rule {rule_id} is not an in-scope catalogue rule")
    if len(unstated) > 10:
        problems.append(f"{len(unstated)} rules are listed as unstated; at most 10 are allowed")
    return problems


def check_obligations(machines: Mapping[str, Machine] | None = None,
                      obligations: Iterable[Obligation] | None = None,
                      known: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Every obligation checked against the tables, one `CheckResult` each (kind "obligation"),
    then one for the coverage of the catalogue (kind "obligation"). Known findings come back as
    expected conflicts carrying their counterexample; any other failure is a counterexample."""
    from callgate.model.families import MACHINES
    from callgate.model.obligations.checker import coverage_result, to_check_result, verdicts

    chosen = tuple(ALL if obligations is None else obligations)
    listed = KNOWN_FINDINGS if known is None else known
    results = [to_check_result(v, listed)
               for v in verdicts(chosen, MACHINES if machines is None else machines, OBSERVERS)]
    if obligations is None:
        results.append(coverage_result(coverage_problems()))
    return results


def check_machine(machine: Machine, known: Mapping[str, str] | None = None) -> list[CheckResult]:
    """The obligations of one machine, checked against `machine` (for example a broken copy)."""
    return check_obligations({machine.name: machine},
                             [o for o in ALL if o.machine == machine.name], known)


__all__ = [
    "ALL", "BY_ID", "KNOWN_FINDINGS", "OBSERVERS", "UNSTATED",
    "After", "Always", "Now", "Obligation", "ObligationKind", "Observer", "Reach", "Whenever",
    "check_machine", "check_obligations", "coverage_problems", "must_rules_in_scope",
    "obligations_for",
]
