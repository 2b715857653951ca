"""Known deviations of one implementation (an expectations file) and how they change verdicts.

An expectations file is TOML, one per implementation:

    implementation = "wine-ole32"          # optional: the adapter's implementation name

    [[deviation]]
    rule = "COM-SYNC-03"                   # or: case = "event-tour-003" (exactly one of the two)
    verdict = "fail"                       # "fail" or "error": the verdict the deviation gives
    reason = "StdEvent keeps its signal after a satisfied Wait"
    evidence = "bug 4711"                  # optional

A rule entry may also say what the implementation does instead, in one or more `instead`
tables, so that a case goes on past the deviation and tests what lies behind it:

    [[deviation]]
    rule = "RPC-CLI-STATUS-01"
    verdict = "fail"
    reason = "RpcAsyncGetCallStatus is a stub"
    [[deviation.instead]]
    machine = "rpc_call"                   # the model machine (`callgate model rules` lists them)
    op = "RpcAsyncGetCallStatus"           # the operation
    args = { abort = true }                # optional: only these argument values
    state = { phase = ["PENDING", "SENT"] }  # optional: only in these states (a value or a list)
    code = 1914                            # the code the implementation answers
    outputs = { raised = true }            # optional: outputs it must also answer
    next = { phase = "READY" }             # optional: how the state changes (absent: it does not)

An entry may also say `dead_end = false`: its failing steps are no dead end for the report's
figure of what the implementation can still reach (`callgate.conformance.report.reach`), because
the failure depends on something the model state does not record (an earlier argument).

An entry may also say `intermittent = true`: the implementation deviates only in some runs (a
race inside it decides), so a run whose cases exercised the rule without failing on it does not
make the entry stale. Every failure is still judged the same way; only the stale check is off.

A step that the model rejects, whose rules include the entry's rule, and that matches one of its
`instead` tables in every candidate state (operation, arguments, state, code, outputs) is a
*followed deviation*: the step is recorded with `deviation` set to the rule, the model follows
the implementation into the `next` state, and the case goes on. A case that followed deviations
and broke nothing else is `expected_fail` (never `pass`), with the deviations' rules as its
failed rules; a case that later fails on anything else is `fail` as before. Without the file no
step is followed, and the first one fails its case.

Semantics (DESIGN.md, Verdicts):

* A case listed by ID: if its verdict is the listed one it becomes `expected_fail`; if it passes,
  `unexpected_pass` (the file is stale). Any other verdict is left alone.
* A rule listed by ID: a case whose verdict is the listed one *and whose failing step cites the
  rule* becomes `expected_fail`. Passing cases are left alone, because a rule is exercised by many
  transitions and a deviation shows at only some of them: a passing case that merely cites the
  rule says nothing. A rule entry is stale when cases exercised the rule during the run and none
  failed on it; `stale_results()` turns each such entry into one `unexpected_pass` result for the
  stream, so the gate fails until the entry is removed.
* Anything not listed keeps its verdict: the gate still fails on it.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from callgate.conformance.results import CaseResult, Verdict, outputs_text
from callgate.model.families import MACHINES
from callgate.model.rules import catalogue
from callgate.model.transitions import Args, State, Value

VERDICTS: dict[str, Verdict] = {"fail": Verdict.FAIL, "error": Verdict.ERROR}
ENTRY_KEYS = frozenset({"case", "rule", "verdict", "reason", "evidence", "instead", "dead_end",
                        "intermittent"})
INSTEAD_KEYS = frozenset({"machine", "op", "args", "state", "code", "outputs", "next"})
TOP_KEYS = frozenset({"implementation", "deviation"})
STALE_KIND = "expectation"
_HEADER = re.compile(r"^\s*\[\[\s*deviation\s*\]\]")


class ExpectationsError(ValueError):
    """An expectations file that cannot be used; the message names the file, entry and fix."""


@dataclass(frozen=True)
class Instead:
    """What the implementation does instead, for one operation: the observation (`code`,
    `outputs`) in the states and for the arguments it names, and the state it leads to."""

    machine: str
    op: str
    code: int
    args: tuple[tuple[str, Value], ...] = ()
    state: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    outputs: tuple[tuple[str, Value], ...] = ()
    next: tuple[tuple[str, Value], ...] = ()

    def applies(self, machine: str, state: State, op: str, args: Args) -> bool:
        """The description covers `op(args)` in `state` of `machine`."""
        if machine != self.machine or op != self.op:
            return False
        given = dict(args)
        if any(given.get(name) != value for name, value in self.args):
            return False
        view = MACHINES[machine].view(state)
        return all(view[name] in values for name, values in self.state)

    def observed(self, code: int, outputs: Mapping[str, object]) -> bool:
        return code == self.code and all(outputs.get(n) == v for n, v in self.outputs)

    def leads_to(self, state: State) -> State:
        machine = MACHINES[self.machine]
        after = list(state)
        for name, value in self.next:
            after[machine.index(name)] = value
        return tuple(after)

    def describe(self) -> str:
        where = " ".join(f"{n} in {list(v)}" for n, v in self.state) or "every state"
        args = ", ".join(f"{n}={v}" for n, v in self.args)
        outs = f" with {outputs_text(dict(self.outputs))}" if self.outputs else ""
        nxt = ", ".join(f"{n}={v}" for n, v in self.next) or "nothing changes"
        return f"{self.op}({args}) answers {self.code}{outs} in {where}; {nxt}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"machine": self.machine, "op": self.op, "code": self.code}
        if self.args:
            data["args"] = dict(self.args)
        if self.state:
            data["state"] = {n: list(v) for n, v in self.state}
        if self.outputs:
            data["outputs"] = dict(self.outputs)
        if self.next:
            data["next"] = dict(self.next)
        return data


@dataclass(frozen=True)
class Deviation:
    """One entry: a case or a rule expected to give `verdict`, and why; for a rule, optionally
    what the implementation does instead (`instead`), which cases then follow."""

    case: str
    rule: str
    verdict: Verdict
    reason: str
    evidence: str = ""
    line: int = 0
    instead: tuple[Instead, ...] = ()
    # False: a failing step of this entry is no dead end for the report's reach figure
    # (callgate.conformance.report.reach), because the failure depends on something the model
    # state does not record (an earlier argument), so the same step from the same state may pass.
    dead_end: bool = True
    # True: the implementation deviates only in some runs, so the entry is never stale.
    intermittent: bool = False

    @property
    def key(self) -> str:
        return f"case {self.case}" if self.case else f"rule {self.rule}"

    def matches_failure(self, result: CaseResult) -> bool:
        """True if this entry explains `result`'s failure (its verdict and case or rule)."""
        if result.verdict is not self.verdict:
            return False
        if self.case:
            return result.id == self.case
        return self.rule in failing_rules(result)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"verdict": self.verdict.value, "reason": self.reason}
        data["case" if self.case else "rule"] = self.case or self.rule
        if self.evidence:
            data["evidence"] = self.evidence
        if self.instead:
            data["instead"] = [i.to_json() for i in self.instead]
        if not self.dead_end:
            data["dead_end"] = False
        if self.intermittent:
            data["intermittent"] = True
        return data


def failing_rules(result: CaseResult) -> list[str]:
    """The rules a failed or erred case went wrong on: the rules cited by its last step."""
    if result.failed_rules:
        return list(result.failed_rules)
    if result.verdict in (Verdict.ERROR, Verdict.FAIL, Verdict.EXPECTED_FAIL) and result.trace:
        return list(result.trace[-1].rules)
    return []


def exercised_rules(result: CaseResult) -> set[str]:
    """The rules a case that ran (not `not_applicable`) cites: its own and its steps'."""
    if result.verdict is Verdict.NOT_APPLICABLE:
        return set()
    return set(result.rules) | {r for s in result.trace for r in s.rules} | set(result.failed_rules)


@dataclass
class Expectations:
    """The entries of one file, and what they matched during a run (apply() records it)."""

    path: Path
    deviations: tuple[Deviation, ...]
    implementation: str = ""
    _matched: dict[Deviation, int] = field(default_factory=dict, repr=False)
    _exercised: dict[Deviation, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_case = {d.case: d for d in self.deviations if d.case}
        self._by_rule = [d for d in self.deviations if d.rule]

    def follow(self, machine: str, states: Iterable[State], op: str, args: Args, code: int,
               outputs: Mapping[str, object], rules: Iterable[str]
               ) -> tuple[list[Deviation], frozenset[State]] | None:
        """The entries that describe a step the model rejected (the first decides the states it
        leads to); None if no entry describes it in every candidate state (the step then fails
        as before)."""
        cited = set(rules)
        states = tuple(states)
        found: list[Deviation] = []
        leads: frozenset[State] = frozenset()
        for deviation in self._by_rule:
            if deviation.rule not in cited:
                continue
            after: set[State] = set()
            for state in states:
                described = [i for i in deviation.instead
                             if i.applies(machine, state, op, args) and i.observed(code, outputs)]
                if not described:
                    break
                after.add(described[0].leads_to(state))
            else:
                if states and after:
                    if not found:
                        leads = frozenset(after)
                    found.append(deviation)
        return (found, leads) if found else None

    def apply(self, result: CaseResult) -> CaseResult:
        """The result with a listed failure turned `expected_fail`, or a listed case that now
        passes turned `unexpected_pass`; any other result unchanged. A case that followed
        described deviations counts for each of those entries."""
        followed = [d for d in self._by_rule if d.rule in result.deviations]
        for deviation in followed:
            self._count(self._matched, deviation)
        listed = self._by_case.get(result.id)
        if listed is not None:
            if listed.matches_failure(result):
                self._count(self._matched, listed)
                return replace(result, verdict=Verdict.EXPECTED_FAIL, expectation=listed.reason)
            if result.verdict is Verdict.PASS:
                self._count(self._matched, listed)
                return replace(result, verdict=Verdict.UNEXPECTED_PASS, expectation=listed.reason,
                               message=self._stale_message(listed, "the case passed"))
        exercised = exercised_rules(result)
        for deviation in self._by_rule:
            if deviation.rule in exercised:
                self._count(self._exercised, deviation)
        if result.verdict is Verdict.EXPECTED_FAIL and followed:
            return result  # the runner followed the listed deviations and nothing else failed
        for deviation in self._by_rule:
            if deviation.matches_failure(result) and self._explains_others(result):
                self._count(self._matched, deviation)
                return replace(result, verdict=Verdict.EXPECTED_FAIL, expectation=deviation.reason)
        return result

    def explains(self, result: CaseResult) -> bool:
        """A listed entry would turn this failed case `expected_fail` (`apply` without its
        counting): the gate does not shrink such a case, since the entry already says what
        the implementation does and a minimal counterexample would add nothing to the report."""
        listed = self._by_case.get(result.id)
        if listed is not None:
            return listed.matches_failure(result)
        return any(d.matches_failure(result) for d in self._by_rule) and \
            self._explains_others(result)

    def _explains_others(self, result: CaseResult) -> bool:
        """Every other failure the case saw is a listed deviation too: one unlisted failure
        keeps the case failed, however well its first failure is known."""
        return all(any(d.verdict is other.verdict and d.rule in other.failed_rules
                       for d in self._by_rule) for other in result.other_failures)

    def stale_results(self) -> list[CaseResult]:
        """One `unexpected_pass` result per rule entry that cases exercised without failing on it.

        Call once, after the last case; a killed run never gets here, which is right: a rule may
        only be called fixed after every case that could fail on it has run."""
        stale = []
        for d in self._by_rule:
            if self._matched.get(d) or not self._exercised.get(d) or d.intermittent:
                continue
            stale.append(CaseResult(
                id=f"{STALE_KIND}:{d.rule}", kind=STALE_KIND,
                description=f"known deviation of {d.rule} listed in {self.path.name}",
                rules=[d.rule], verdict=Verdict.UNEXPECTED_PASS, steps=0, seconds=0.0,
                message=self._stale_message(
                    d, f"{self._exercised[d]} cases exercised the rule and none gave {d.verdict.value}"),
                expectation=d.reason))
        return stale

    def tally(self) -> list[list[int]]:
        """What the entries matched and exercised so far, one [matched, exercised] pair per
        entry in the file's order: a shard's run records it, so that `callgate report --merge`
        can judge the entries stale over every shard (`add_tally`)."""
        return [[self._matched.get(d, 0), self._exercised.get(d, 0)] for d in self.deviations]

    def add_tally(self, tally: Sequence[Sequence[int]]) -> None:
        """Count what another part of the run (a shard) matched and exercised (`tally`)."""
        if len(tally) != len(self.deviations):
            raise ValueError(f"a tally of {len(tally)} entries for {len(self.deviations)} "
                             f"deviations: the runs used different expectations files")
        for d, (matched, exercised) in zip(self.deviations, tally, strict=True):
            self._matched[d] = self._matched.get(d, 0) + int(matched)
            self._exercised[d] = self._exercised.get(d, 0) + int(exercised)

    def unused(self) -> list[Deviation]:
        """Entries that matched nothing: a case that never ran (or ran with another verdict), a
        rule that no case exercised. Not an error: a smaller budget or a missing capability skips
        cases. Rule entries that were exercised but never failed are `stale_results()` instead."""
        return [d for d in self.deviations
                if not self._matched.get(d) and not (d.rule and self._exercised.get(d))]

    def to_json(self) -> dict[str, Any]:
        """What a run_start event records, so reports can show the entries (see `entry_matches`)."""
        return {"file": str(self.path), "implementation": self.implementation,
                "deviations": [d.to_json() for d in self.deviations]}

    def mismatch(self, implementation: str) -> str:
        """A warning if the file names another implementation than the adapter's, else ''."""
        if self.implementation and implementation and self.implementation != implementation:
            return (f"{self.path} lists deviations of {self.implementation!r}, but the adapter is "
                    f"{implementation!r}: pass the expectations file of this implementation")
        return ""

    def _stale_message(self, d: Deviation, what: str) -> str:
        return (f"{d.key} is listed in {self.path} as a known deviation ({d.verdict.value}: "
                f"{d.reason}), but {what}: it is fixed, so remove the entry (line {d.line})")

    @staticmethod
    def _count(counter: dict[Deviation, int], d: Deviation) -> None:
        counter[d] = counter.get(d, 0) + 1


def entry_matches(entry: Mapping[str, Any], case: Mapping[str, Any]) -> bool:
    """For reports: did a recorded entry (Deviation.to_json) explain a report case?

    `case` is a case of report.json (`id`, `verdict`, `failed_rules`)."""
    verdict = case.get("verdict")
    if "case" in entry:
        return bool(case.get("id") == entry["case"]
                    and verdict in (Verdict.EXPECTED_FAIL.value, Verdict.UNEXPECTED_PASS.value))
    rule = entry.get("rule")
    if rule in case.get("deviations", []):
        return True
    if verdict == Verdict.EXPECTED_FAIL.value:
        return rule in case.get("failed_rules", [])
    return bool(verdict == Verdict.UNEXPECTED_PASS.value and case.get("kind") == STALE_KIND
                and case.get("id") == f"{STALE_KIND}:{rule}")


def load(path: Path) -> Expectations:
    """Read and check an expectations file; any problem raises ExpectationsError saying where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExpectationsError(f"cannot read expectations file {path}: {exc.strerror or exc}") \
            from exc
    return parse(text, path)


def parse(text: str, path: Path) -> Expectations:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationsError(f"{path}: not valid TOML: {exc}; see README.md, 'Known deviations'"
                                ) from exc
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ExpectationsError(f"{path}: unknown top-level keys {unknown}; an expectations file "
                                f"has 'implementation' and [[deviation]] tables only")
    implementation = data.get("implementation", "")
    if not isinstance(implementation, str):
        raise ExpectationsError(f"{path}: 'implementation' must be a string")
    entries = data.get("deviation", [])
    if not isinstance(entries, list):
        raise ExpectationsError(f"{path}: 'deviation' must be an array of tables: write each "
                                f"entry under its own [[deviation]] header")
    lines = [i for i, line in enumerate(text.splitlines(), 1) if _HEADER.match(line)]
    problems: list[str] = []
    deviations: list[Deviation] = []
    seen: dict[str, Deviation] = {}
    for n, entry in enumerate(entries, 1):
        line = lines[n - 1] if n <= len(lines) else 0
        where = f"{path}:{line}: deviation #{n}" if line else f"{path}: deviation #{n}"
        try:
            deviation = _entry(entry, line)
        except ExpectationsError as exc:
            problems.append(f"{where}: {exc}")
            continue
        where += f" ({deviation.key})"
        earlier = seen.get(deviation.key)
        if earlier is not None:
            problems.append(f"{where}: duplicate of the entry at line {earlier.line}: keep one")
            continue
        seen[deviation.key] = deviation
        deviations.append(deviation)
    if problems:
        raise ExpectationsError("\n".join(problems))
    return Expectations(path, tuple(deviations), implementation)


def _entry(entry: object, line: int) -> Deviation:
    if not isinstance(entry, dict):
        raise ExpectationsError("is not a table")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise ExpectationsError(f"unknown keys {unknown}; allowed: {sorted(ENTRY_KEYS)}")
    dead_end = entry.get("dead_end", True)
    if not isinstance(dead_end, bool):
        raise ExpectationsError(f"dead_end must be true or false, not {dead_end!r}")
    intermittent = entry.get("intermittent", False)
    if not isinstance(intermittent, bool):
        raise ExpectationsError(f"intermittent must be true or false, not {intermittent!r}")
    for key in ENTRY_KEYS - {"instead", "dead_end", "intermittent"}:
        if key in entry and not isinstance(entry[key], str):
            raise ExpectationsError(f"{key} must be a string, not {type(entry[key]).__name__}")
    case, rule = entry.get("case", "").strip(), entry.get("rule", "").strip()
    if bool(case) == bool(rule):
        raise ExpectationsError("give exactly one of case = \"CASE-ID\" or rule = \"RULE-ID\"")
    if rule:
        _check_rule(rule)
    verdict = entry.get("verdict", "")
    if verdict not in VERDICTS:
        raise ExpectationsError(f"unknown verdict {verdict!r}: a known deviation gives "
                                f"{' or '.join(repr(v) for v in VERDICTS)}")
    reason = entry.get("reason", "").strip()
    if not reason:
        raise ExpectationsError("missing reason: say why the implementation deviates (a bug "
                                "number, a design decision), so the entry can be reviewed")
    instead = entry.get("instead", [])
    if not isinstance(instead, list) or not all(isinstance(i, dict) for i in instead):
        raise ExpectationsError("instead must be an array of tables: write each under its own "
                                "[[deviation.instead]] header")
    if instead and not rule:
        raise ExpectationsError("instead describes a deviation of a rule: give rule = "
                                "\"RULE-ID\", not case")
    if instead and verdict != "fail":
        raise ExpectationsError("an entry with instead describes what the implementation "
                                "answers, so its verdict is \"fail\"")
    described = tuple(_instead(i, n) for n, i in enumerate(instead, 1))
    return Deviation(case, rule, VERDICTS[verdict], reason, entry.get("evidence", "").strip(), line,
                     described, dead_end, intermittent)


def from_record(recorded: Mapping[str, Any]) -> Expectations:
    """The entries a run recorded in its run_start event (`Expectations.to_json`), checked as a
    file's are: what a report needs to follow the deviations without the file itself."""
    path = Path(str(recorded.get("file") or "expectations.toml"))
    deviations = []
    for n, entry in enumerate(recorded.get("deviations") or [], 1):
        try:
            deviations.append(_entry(dict(entry), 0))
        except (ExpectationsError, TypeError, ValueError) as exc:
            raise ExpectationsError(f"{path}: recorded deviation #{n}: {exc}") from exc
    return Expectations(path, tuple(deviations), str(recorded.get("implementation") or ""))


def _instead(table: dict[str, Any], n: int) -> Instead:
    """One [[deviation.instead]] table, checked against the model: every name and value must be
    one the machine has, so a typo is an error here and not a deviation that never matches."""
    where = f"instead #{n}"
    unknown = sorted(set(table) - INSTEAD_KEYS)
    if unknown:
        raise ExpectationsError(f"{where}: unknown keys {unknown}; allowed: {sorted(INSTEAD_KEYS)}")
    for key in ("machine", "op", "code"):
        if key not in table:
            raise ExpectationsError(f"{where}: missing {key}")
    name = table["machine"]
    if name not in MACHINES:
        raise ExpectationsError(f"{where}: machine: unknown machine {name!r}; known: "
                                f"{sorted(MACHINES)}")
    machine = MACHINES[name]
    ops = {o.name: o for o in machine.operations}
    op = table["op"]
    if op not in ops:
        raise ExpectationsError(f"{where}: op: {name} has no operation {op!r}; it has "
                                f"{sorted(ops)}")
    code = table["code"]
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 0xFFFFFFFF:
        raise ExpectationsError(f"{where}: code must be an integer from 0 to 0xFFFFFFFF (the "
                                f"code as the adapter reports it), not {code!r}")
    params = {p.name: p.domain for p in ops[op].params}
    args = _values(table.get("args", {}), params, f"{where}: args", f"{op} has no parameter")
    fields = {f.name: f.domain for f in machine.fields}
    state: list[tuple[str, tuple[Value, ...]]] = []
    raw_state = table.get("state", {})
    if not isinstance(raw_state, dict):
        raise ExpectationsError(f"{where}: state must be a table of field = value or [values]")
    for field_name, raw in raw_state.items():
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise ExpectationsError(f"{where}: state: {field_name} lists no values")
        for value in values:
            _values({field_name: value}, fields, f"{where}: state", f"{name} has no field")
        state.append((field_name, tuple(values)))
    nxt = _values(table.get("next", {}), fields, f"{where}: next", f"{name} has no field")
    outputs = table.get("outputs", {})
    if not isinstance(outputs, dict) or not all(
            isinstance(v, (bool, int, str)) for v in outputs.values()):
        raise ExpectationsError(f"{where}: outputs must be a table of name = value (booleans, "
                                f"integers or strings)")
    return Instead(name, op, code, args, tuple(state), tuple(outputs.items()), nxt)


def _values(raw: object, domains: Mapping[str, tuple[Value, ...]], where: str,
            missing: str) -> tuple[tuple[str, Value], ...]:
    if not isinstance(raw, dict):
        raise ExpectationsError(f"{where} must be a table of name = value")
    checked = []
    for name, value in raw.items():
        if name not in domains:
            raise ExpectationsError(f"{where}: {missing} {name!r}; known: {sorted(domains)}")
        if value not in domains[name] or type(value) not in {type(v) for v in domains[name]}:
            raise ExpectationsError(f"{where}: {name} = {value!r} is not one of "
                                    f"{list(domains[name])}")
        checked.append((name, value))
    return tuple(checked)


def _check_rule(rule_id: str) -> None:
    rules = catalogue()
    if rule_id not in rules:
        close = _similar(rule_id, rules)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ExpectationsError(f"unknown rule {rule_id!r}{hint}; `callgate model rules` lists "
                                f"the rule IDs")
    if not rules[rule_id].in_scope:
        raise ExpectationsError(f"rule {rule_id} is out of scope, so no case exercises it: "
                                f"remove the entry")


def _similar(rule_id: str, rules: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(rule_id.upper(), list(rules), n=3, cutoff=0.8)


def apply_all(expectations: Expectations | None, results: Sequence[CaseResult]) -> list[CaseResult]:
    """Apply to every result and append the stale rule entries (tests and offline use)."""
    if expectations is None:
        return list(results)
    done = [expectations.apply(r) for r in results]
    return done + expectations.stale_results()
