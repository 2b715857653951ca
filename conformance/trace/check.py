"""`callgate check-trace`: judge recorded calls against the model (monitor mode).

The trace is split into objects (a call object, an RPC_ASYNC_STATE, an event...): a call names its
object, or, for the server's own calls, the client's object through a `call_id` both carry. Each
object gets its machine from its "object" line, the call's `kind`, or the only machine whose
operations include the API. The server's calls are the model's `server_*` actions, observed, not
driven. Then each object's calls, in the order they were invoked, are judged:

* calls that overlap no other call of the object are judged one by one with the model's tracker,
  as the gate's runner judges a step (`callgate.model.transitions.Tracker`);
* a group of calls whose intervals overlap is checked for linearizability with the model as the
  specification (`callgate.conformance.judge.linearizability`), from the states the tracker
  holds; the tracker then holds every state some valid order of the group ends in.

Objects are checked alone: linearizability is local (Herlihy and Wing), and the model's machines
are independent objects. Each object becomes one case of the report (kind "trace"): `fail` with the
rule and the shortest failing sub-trace; `pass` only when every call of the object was judged;
`not_applicable` (with the reason) when nothing or not all of it could be judged; `error` for a
call with no recorded response or a search that ran out of budget. Calls of APIs the model does
not cover, and objects no machine covers, are counted and listed as `not_applicable` cases.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callgate.conformance.cases.values import ECHO, Binding, ValueChooser, class_of, replayed
from callgate.conformance.judge.linearizability import (
    HistoryOp,
    Linearizability,
    check_slot,
)
from callgate.conformance.judge.perform import code_name
from callgate.conformance.results import CaseResult, StepRecord, Verdict, outputs_text
from callgate.conformance.trace.format import KIND_MACHINES, Call, Trace
from callgate.model.families import MACHINES
from callgate.model.transitions import (
    Actor,
    Allowed,
    Anything,
    Args,
    Kind,
    Machine,
    ModelError,
    Pins,
    State,
    Tracker,
    Value,
    step,
)

CASE_KIND = "trace"
INFINITE_MS = 0xFFFFFFFF
# A linearizable group of more overlapping calls than this is not followed further: the states
# after it come from every valid order, and the orders grow as the factorial.
MAX_GROUP = 7

# The server's Microsoft API calls, as the model's server actions of each machine.
SERVER_ALIASES: Mapping[str, Mapping[str, str]] = {
    "com_call": {"Signal": "server_signal", "TestCancel": "server_test_cancel",
                 "CoImpersonateClient": "server_impersonate"},
    "rpc_call": {"RpcAsyncCompleteCall": "server_complete", "RpcAsyncAbortCall": "server_abort",
                 "RpcRaiseException": "server_raise", "RpcServerTestCancel": "server_test_cancel"},
    "thread_cancel": {"CoTestCancel": "server_test_cancel"},
}
# APIs that change nothing the model follows: recorded, counted, not judged.
NEUTRAL = frozenset({"AddRef"})


def short_name(api: str) -> str:
    """`ISynchronize::Wait` -> `Wait`; `AsyncIFoo::Begin_Method` -> `Begin_`."""
    name = api.rsplit("::", 1)[-1]
    for prefix in ("Begin_", "Finish_"):
        if name.startswith(prefix):
            return prefix
    return name


def model_op(machine: Machine, api: str, side: str) -> str | None:
    """The model operation an API call is on `machine`, or None if the model has none."""
    name = short_name(api)
    actors = {o.name: o.actor for o in machine.operations}
    if side == "server":
        alias = SERVER_ALIASES.get(machine.name, {}).get(name)
        if alias is not None:
            return alias
        return name if actors.get(name) is Actor.SERVER else None
    return name if actors.get(name) is Actor.CLIENT else None


def machine_for_api(api: str, side: str) -> str | None:
    """The only machine that has an operation for this API, or None (none, or several)."""
    found = [n for n, m in MACHINES.items() if model_op(m, api, side) is not None]
    return found[0] if len(found) == 1 else None


@dataclass
class TraceObject:
    """One object's calls and its machine ('' when no machine covers it)."""

    name: str
    machine: str
    calls: list[Call] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, int]] | None = None
    how: str = ""  # how the machine was found, or why none was
    server_unseen: bool = False


@dataclass
class CheckOutcome:
    """The cases of a checked trace, and what the model does not cover."""

    cases: list[CaseResult]
    unknown_apis: dict[str, int]
    uncovered_objects: dict[str, int]
    calls: int

    def summary(self) -> dict[str, Any]:
        return {"calls": self.calls, "objects": sum(1 for c in self.cases
                                                    if c.id.startswith("trace/object/")),
                "unknown_apis": dict(self.unknown_apis),
                "uncovered_objects": dict(self.uncovered_objects)}


def split(trace: Trace) -> tuple[list[TraceObject], list[Call]]:
    """The trace's objects, and the server calls no client object claims."""
    by_call_id: dict[str, str] = {}
    for call in trace.calls:
        if call.side == "client" and call.call_id and call.object:
            by_call_id.setdefault(call.call_id, call.object)
    objects: dict[str, TraceObject] = {}
    orphans: list[Call] = []
    for call in sorted(trace.calls, key=lambda c: (c.invoked, c.seq)):
        key = by_call_id.get(call.call_id, "") if call.side == "server" else ""
        key = key or call.object
        if not key:
            orphans.append(call)
            continue
        obj = objects.get(key)
        if obj is None:
            obj = objects[key] = TraceObject(key, "")
        obj.calls.append(call)
    for obj in objects.values():
        info = trace.objects.get(obj.name)
        if info is not None:
            obj.machine, obj.config, obj.values = info.machine, info.config, info.values
            obj.server_unseen = info.server_unseen
            obj.how = "declared"
            if obj.machine not in MACHINES:
                obj.machine, obj.how = "", f"its declared machine {info.machine!r} is not a model"
            continue
        kinds = {c.kind for c in obj.calls if c.kind}
        if len(kinds) == 1:
            obj.machine, obj.how = KIND_MACHINES[next(iter(kinds))], "kind"
        elif len(kinds) > 1:
            obj.how = f"its calls name several kinds ({', '.join(sorted(kinds))})"
        else:
            guesses = {machine_for_api(c.api, c.side) for c in obj.calls} - {None}
            if len(guesses) == 1:
                obj.machine, obj.how = str(next(iter(guesses))), "api"
            else:
                obj.how = "no machine has all of its APIs"
    return list(objects.values()), orphans


class _Values:
    """Concrete numbers of echoed values ([out], reply, abort code) to the model's abstract ones:
    the recorder's binding when it wrote one, else bound in the order they first appear."""

    def __init__(self, values: Mapping[str, Mapping[str, int]] | None) -> None:
        self.given = values is not None
        self.binding: Binding = replayed(values) if values is not None else \
            ValueChooser().binding()

    def abstract(self, machine: Machine, op: str, param: str, value: Value) -> Value:
        vc = class_of(machine.name, op, param, value)
        if vc is None or vc.kind != ECHO:
            raise ModelError(f"{param} is not an echoed value")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelError(f"{param}={value!r} is not a number")
        mapping = self.binding.bound.setdefault(vc.name, {})
        for abstract, concrete in mapping.items():
            if concrete == value:
                return type(vc.domain[0])(abstract) if vc.domain else value
        free = [a for a in vc.domain if str(a) not in mapping]
        if self.given or not free:
            raise ModelError(f"{param}={value} stands for none of the model's "
                             f"{len(vc.domain)} values of {vc.name}")
        mapping[str(free[0])] = value
        return free[0]


def abstract_choices(machine: Machine, op: str, args: Mapping[str, Value], values: _Values,
                     unknown: frozenset[str] = frozenset()) -> list[Args]:
    """The model's arguments a recorded call may have had: one tuple when every argument was
    recorded; with arguments the recorder could not see (`unknown`), one per value of them."""
    hidden = [p for p in machine.operation(op).params if f"args.{p.name}" in unknown]
    known = abstract_args(machine, op, {k: v for k, v in args.items()
                                        if f"args.{k}" not in unknown}, values,
                          skip=frozenset(p.name for p in hidden))
    choices = [known]
    for param in hidden:
        choices = [(*c, (param.name, v)) for c in choices for v in param.domain]
    order = [p.name for p in machine.operation(op).params]
    return [tuple(sorted(c, key=lambda kv: order.index(kv[0]))) for c in choices]


def abstract_args(machine: Machine, op: str, args: Mapping[str, Value], values: _Values,
                  skip: frozenset[str] = frozenset()) -> Args:
    """The model's arguments for a recorded call; ModelError says why there are none.
    Parameters in `skip` (the recorder could not see them) are left out."""
    result = []
    for param in machine.operation(op).params:
        if param.name in skip:
            continue
        if param.name not in args:
            raise ModelError(f"the call does not record argument {param.name!r}")
        value = args[param.name]
        vc = class_of(machine.name, op, param.name, value)
        if vc is not None and vc.kind == ECHO:
            result.append((param.name, values.abstract(machine, op, param.name, value)))
            continue
        if any(value == d and isinstance(value, bool) == isinstance(d, bool)
               for d in param.domain):  # True is not 1, nor 0 False
            result.append((param.name, value))
            continue
        number = isinstance(value, int) and not isinstance(value, bool)
        if number and value == 0 and "zero" in param.domain:
            result.append((param.name, "zero"))
        elif number and value == INFINITE_MS and "infinite" in param.domain:
            result.append((param.name, "infinite"))
        elif number and 0 < int(value) < INFINITE_MS and \
                (finite := _finite_class(machine, op, param.name)) is not None:
            result.append((param.name, finite))
        else:
            raise ModelError(f"{param.name}={value!r} is none of the model's values "
                             f"({', '.join(map(str, param.domain))})")
    extra = set(args) - {p.name for p in machine.operation(op).params}
    if extra:
        raise ModelError(f"the model's {op} has no argument(s) {', '.join(sorted(extra))}")
    return tuple(result)


def _finite_class(machine: Machine, op: str, param: str) -> Value | None:
    """The abstract value that stands for every finite number of a magnitude parameter."""
    for value in machine.operation(op).params[
            [p.name for p in machine.operation(op).params].index(param)].domain:
        vc = class_of(machine.name, op, param, value)
        if vc is not None and vc.kind != ECHO:
            return value
    return None


@dataclass
class _Judged:
    """The running judgement of one object."""

    records: list[StepRecord] = field(default_factory=list)
    verdict: Verdict = Verdict.PASS
    message: str = ""
    failed_rules: list[str] = field(default_factory=list)
    judged: int = 0
    linearizability: str = ""
    covered: set[str] = field(default_factory=set)
    unseen: list[str] = field(default_factory=list)  # calls with values the recorder did not see


def check(trace: Trace) -> CheckOutcome:
    """Judge every object of `trace`; see the module's docstring."""
    objects, orphans = split(trace)
    cases: list[CaseResult] = []
    unknown: Counter[str] = Counter()
    unknown_where: dict[str, set[str]] = {}
    uncovered: dict[str, int] = {}
    for obj in objects:
        if not obj.machine:
            uncovered[obj.name] = len(obj.calls)
            cases.append(_plain(f"trace/uncovered/{obj.name}", Verdict.NOT_APPLICABLE,
                                f"{len(obj.calls)} call(s) on {obj.name}: the model covers no "
                                f"such object ({obj.how})", len(obj.calls)))
            continue
        machine = MACHINES[obj.machine]
        for call in obj.calls:
            if model_op(machine, call.api, call.side) is None and \
                    short_name(call.api) not in NEUTRAL:
                unknown[call.api] += 1
                unknown_where.setdefault(call.api, set()).add(obj.name)
        cases.append(judge_object(obj, trace.pins))
    if orphans:
        names = Counter(c.api for c in orphans)
        cases.append(_plain("trace/unclaimed", Verdict.NOT_APPLICABLE,
                            f"{len(orphans)} server call(s) whose call_id no client object "
                            f"carries: " + ", ".join(f"{a} x{n}" for a, n in sorted(names.items())),
                            len(orphans)))
    for api, count in sorted(unknown.items()):
        if count:
            cases.append(_plain(f"trace/unknown-api/{api}", Verdict.NOT_APPLICABLE,
                                f"{count} call(s) of {api} on "
                                f"{', '.join(sorted(unknown_where[api]))}: the model has no "
                                f"operation for this API", count))
    return CheckOutcome(cases, {a: n for a, n in sorted(unknown.items()) if n}, uncovered,
                        len(trace.calls))


def _plain(case_id: str, verdict: Verdict, message: str, steps: int) -> CaseResult:
    return CaseResult(id=case_id, kind=CASE_KIND, description=message, rules=[],
                      verdict=verdict, steps=steps, seconds=0.0, message=message)


def _initial(machine: Machine, config: Mapping[str, Any]) -> frozenset[State]:
    if config:
        return frozenset([machine.make(**dict(config))])
    return frozenset(machine.initial)


def judge_object(obj: TraceObject, pins: Pins) -> CaseResult:
    """One object's case: its calls judged as the module's docstring says."""
    started = time.perf_counter()
    machine = MACHINES[obj.machine]
    try:
        tracker = Tracker(machine, pins, _initial(machine, obj.config))
    except ModelError as exc:
        return _plain(f"trace/object/{obj.name}", Verdict.ERROR,
                      f"{obj.name}: its declared configuration is not the model's: {exc}",
                      len(obj.calls))
    values = _Values(obj.values)
    judged = _Judged()
    stop = ""
    for group in _groups(obj.calls):
        issued = next((c for c in group if short_name(c.api) == "AsyncCall"), None)
        if obj.server_unseen and issued is not None:
            stop = (f"{issued.line}: the server's side of this call was not recorded (no tie "
                    f"names it), so nothing from its issue on is judged")
            break
        if len(group) == 1:
            stop = _judge_one(obj, machine, tracker, values, group[0], judged)
        else:
            stop = _judge_group(obj, machine, tracker, values, group, judged, pins)
        if stop or judged.verdict is not Verdict.PASS:
            break
    total = len(obj.calls)
    if judged.verdict is Verdict.PASS:
        if judged.judged == 0:
            judged.verdict = Verdict.NOT_APPLICABLE
            judged.message = f"nothing on {obj.name} could be judged: {stop}"
        elif judged.judged < total:
            judged.verdict = Verdict.NOT_APPLICABLE
            judged.message = (f"judged {judged.judged} of {total} call(s), all allowed; the "
                              f"rest cannot be judged: {stop}")
        elif judged.unseen:
            judged.verdict = Verdict.NOT_APPLICABLE
            judged.message = (f"all {total} call(s) allowed for some value of what the recorder "
                              f"did not see, so no pass is claimed (a call no value allows "
                              f"would have failed); not seen: {'; '.join(judged.unseen[:6])}"
                              + (f" and {len(judged.unseen) - 6} more" if len(judged.unseen) > 6
                                 else ""))
        else:
            judged.message = f"all {total} call(s) allowed by the model"
    keep = judged.verdict in (Verdict.FAIL, Verdict.ERROR)
    return CaseResult(
        id=f"trace/object/{obj.name}", kind=CASE_KIND,
        description=f"the recorded calls on {obj.name} ({obj.machine})",
        rules=sorted({r for s in judged.records for r in s.rules}), verdict=judged.verdict,
        steps=total, seconds=time.perf_counter() - started, message=judged.message,
        trace=judged.records if keep else [], covered=sorted(judged.covered),
        slots={obj.name: obj.machine}, failed_rules=judged.failed_rules,
        linearizability=judged.linearizability,
        values=values.binding.used_json(),
        replay={"slots": [{"name": obj.name, "machine": obj.machine,
                           "config": dict(obj.config)}],
                "steps": [{"slot": obj.name, "op": c.api, "args": dict(c.args)}
                          for c in obj.calls]})


def _groups(calls: Sequence[Call]) -> list[list[Call]]:
    """The calls in invocation order, in groups whose intervals overlap (one call: sequential)."""
    groups: list[list[Call]] = []
    end = -float("inf")
    for call in calls:
        finish = float("inf") if call.responded is None else call.responded
        if groups and call.invoked < end:
            groups[-1].append(call)
            end = max(end, finish)
        else:
            groups.append([call])
            end = finish
    return groups


def _describe(machine: Machine, states: frozenset[State]) -> str:
    return " | ".join(machine.describe(s) for s in sorted(states, key=repr))


def _record(obj: TraceObject, call: Call, op: str, args: Args, *, allowed: list[str], ok: bool,
            rules: list[str], before: str, machine: Machine) -> StepRecord:
    return StepRecord(
        slot=obj.name, op=op, args=dict(args), code=call.code,
        code_name=code_name(call.code, machine.name), outputs=dict(call.outputs),
        allowed=list(dict.fromkeys(allowed)), ok=ok, rules=rules, state_before=before,
        seconds=(call.responded - call.invoked) if call.responded is not None else 0.0,
        thread=call.thread, started=call.invoked, ended=call.responded or 0.0,
        sent={k: v for k, v in call.args.items() if isinstance(v, int) and not isinstance(v, bool)
              and dict(args).get(k) != v})


def _mapped(obj: TraceObject, machine: Machine, values: _Values, call: Call
            ) -> tuple[str, list[Args]] | str:
    """The call as a model operation and the arguments it may have had (one tuple unless the
    recorder could not see some), or why it cannot be judged."""
    if short_name(call.api) in NEUTRAL:
        return ""
    op = model_op(machine, call.api, call.side)
    if op is None:
        return (f"{call.line}: the model's {machine.name} has no operation for the "
                f"{call.side}'s {call.api}")
    try:
        return op, abstract_choices(machine, op, call.args, values, call.unknown)
    except ModelError as exc:
        return f"{call.line}: {call.api}: {exc}"


def _observed(values: _Values, machine: Machine, op: str, call: Call
              ) -> tuple[int | None, dict[str, Any]]:
    """The call's code and the outputs the recorder saw, as the model sees them (code None: not
    seen)."""
    outputs = {k: v for k, v in call.outputs.items() if f"outputs.{k}" not in call.unknown
               and "outputs.*" not in call.unknown}
    if call.code is None or "code" in call.unknown:
        return None, values.binding.observed(machine.name, op, 0, outputs)[1]
    return values.binding.observed(machine.name, op, call.code, outputs)


def _admits(allowed: Allowed, code: int | None, outputs: Mapping[str, Any],
            unknown: frozenset[str]) -> bool:
    """`allowed.admits`, with what the recorder did not see left unchecked ("outputs.*": no
    output was seen)."""
    if "outputs.*" in unknown:
        unknown = unknown | {f"outputs.{n}" for n, _ in allowed.outputs}
    if code is None or any(f"outputs.{n}" in unknown for n, _ in allowed.outputs):
        allowed = replace(allowed, code=Anything("not recorded") if code is None else allowed.code,
                          outputs=tuple((n, e) for n, e in allowed.outputs
                                        if f"outputs.{n}" not in unknown))
    return allowed.admits(0 if code is None else code, outputs)


def _shown(choices: list[Args]) -> Args:
    """The arguments for the report: those every choice shares, and "unseen" for the others."""
    first = choices[0] if choices else ()
    return tuple((k, v if all(dict(c).get(k) == v for c in choices) else "unseen")
                 for k, v in first) if len(choices) > 1 else first


def _unseen(call: Call) -> str:
    return f"{call.line}: {call.api}'s " + ", ".join(
        "[out] values" if u == "outputs.*" else u.split(".", 1)[-1] if "." in u
        else "return code" for u in sorted(call.unknown))


def _judge_one(obj: TraceObject, machine: Machine, tracker: Tracker, values: _Values,
               call: Call, judged: _Judged) -> str:
    mapped = _mapped(obj, machine, values, call)
    if mapped == "":
        judged.judged += 1  # a neutral API: nothing to judge, nothing changes
        return ""
    if isinstance(mapped, str):
        return mapped
    op, choices = mapped
    if call.unknown:
        return _judge_unseen(obj, machine, tracker, values, call, op, choices, judged)
    (args,) = choices
    kind = tracker.kind(op, args)
    if kind is not Kind.DEFINED:
        return (f"{call.line}: the model has {op} {kind.value} in the state the object is in "
                f"({_describe(machine, tracker.states)}): what follows is not judged")
    before = tracker.states
    allowed = tracker.expected(op, args)
    if call.responded is None or call.code is None:
        judged.records.append(_record(obj, call, op, args, allowed=[a.describe() for a in allowed],
                                      ok=False, rules=sorted({r for a in allowed for r in a.rules}),
                                      before=_describe(machine, before), machine=machine))
        judged.verdict = Verdict.ERROR
        judged.message = f"{call.line}: {op} has no recorded response (hung or crashed)"
        return ""
    code, outputs = values.binding.observed(machine.name, op, call.code, call.outputs)
    judgement = tracker.observe(op, args, code, outputs)
    if len(before) == 1:
        (state,) = before
        judged.covered.add(f"{machine.name}|{','.join(map(str, state))}|{op}("
                           + ",".join(f"{k}={v}" for k, v in args) + ")")
    record = _record(obj, call, op, args, allowed=[a.describe() for a in judgement.allowed],
                     ok=judgement.ok, rules=list(judgement.rules),
                     before=_describe(machine, before), machine=machine)
    judged.records.append(record)
    judged.judged += 1
    if not judgement.ok:
        judged.verdict = Verdict.FAIL
        judged.failed_rules = list(judgement.rules)
        shown = f" with {outputs_text(call.outputs)}" if call.outputs else ""
        judged.message = (f"{call.line}: {op}: observed {record.code_name or call.code}{shown}; "
                          f"allowed: {'; '.join(record.allowed) or 'nothing'}")
    return ""


def _judge_unseen(obj: TraceObject, machine: Machine, tracker: Tracker, values: _Values,
                  call: Call, op: str, choices: list[Args], judged: _Judged) -> str:
    """A call with values the recorder could not see: allowed if some value of them allows what
    was seen, failed only if none does (and the model defines the call for every value)."""
    judged.unseen.append(_unseen(call))
    if call.responded is None:
        judged.verdict = Verdict.ERROR
        judged.message = f"{call.line}: {op} has no recorded response (hung or crashed)"
        return ""
    code, outputs = _observed(values, machine, op, call)
    before = tracker.states
    after: set[State] = set()
    allowed: list[Allowed] = []
    undefined = []
    for args in choices:
        kind = tracker.kind(op, args)
        if kind is Kind.UNDEFINED or (kind is Kind.NOT_OFFERED and len(choices) == 1):
            undefined.append(args)
        if kind is not Kind.DEFINED:
            continue  # with unseen arguments: a combination the model does not offer
        for a in tracker.expected(op, args):
            allowed.append(a)
            if _admits(a, code, outputs, call.unknown):
                after.add(a.next_state)
    rules = sorted({r for a in allowed for r in a.rules})
    record = _record(obj, call, op, _shown(choices),
                     allowed=list(dict.fromkeys(a.describe() for a in allowed))[:20],
                     ok=bool(after), rules=rules, before=_describe(machine, before),
                     machine=machine)
    if undefined:  # that value lets anything happen: neither a failure nor a next state
        return (f"{call.line}: the model has {op} undefined or not offered for some value of "
                f"what the recorder did not see ({_unseen(call)}): what follows is not judged")
    judged.records.append(record)
    if after:
        tracker.states = frozenset(after)
        judged.judged += 1
        return ""
    judged.verdict = Verdict.FAIL
    judged.failed_rules = rules
    judged.message = (f"{call.line}: {op}: observed {record.code_name or call.code}, which no "
                      f"value of what the recorder did not see allows ({_unseen(call)}); "
                      f"allowed: {'; '.join(record.allowed) or 'nothing'}")
    return ""


def _judge_group(obj: TraceObject, machine: Machine, tracker: Tracker, values: _Values,
                 group: list[Call], judged: _Judged, pins: Pins) -> str:
    ops: list[HistoryOp] = []
    calls: list[Call] = []
    # Every call's arguments first: a value the server passes binds before an output echoes it.
    mapped_all = [(call, _mapped(obj, machine, values, call)) for call in group]
    if any(call.unknown for call in group):
        return _judge_group_unseen(obj, machine, tracker, values, mapped_all, judged, pins)
    for call, mapped in mapped_all:
        if mapped == "":
            continue
        if isinstance(mapped, str):
            return mapped + " (in a group of overlapping calls)"
        op, (args,) = mapped
        code, outputs = (values.binding.observed(machine.name, op, call.code, call.outputs)
                         if call.code is not None else (None, {}))
        ops.append(HistoryOp(len(ops), obj.name, call.thread, op, args, call.invoked,
                             call.responded, code, tuple(sorted(outputs.items()))))
        calls.append(call)
    neutral = len(group) - len(ops)
    before = tracker.states
    verdict = check_slot(machine, ops, before, pins)
    judged.linearizability = verdict.verdict.value
    describe = _describe(machine, before)
    if verdict.verdict is Linearizability.UNKNOWN:
        judged.verdict = Verdict.ERROR
        judged.message = (f"{group[0].line}: {len(ops)} overlapping calls: the linearizability "
                          f"search ran out of budget ({verdict.explored} configurations)")
        return ""
    if verdict.verdict is Linearizability.NOT_LINEARIZABLE:
        keep = {o.id for o in verdict.counterexample}
        culprit = verdict.culprit.id if verdict.culprit is not None else ops[-1].id
        reached = _reachable(machine, ops, before, pins)
        undefined = _undefined_on_the_way(machine, ops, before, pins)
        if undefined is not None:  # some order reaches a call the model leaves undefined:
            # anything may follow it, so no order can be ruled out, and nothing after is known
            return (f"{group[0].line}: {len(ops)} overlapping calls: some order reaches "
                    f"{undefined.op}, which the model leaves undefined there: neither they nor "
                    f"what follows are judged")
        for hop, call in zip(ops, calls, strict=True):
            if hop.id not in keep and hop.id != culprit:
                continue
            rules: set[str] = set()
            allowed: list[str] = []
            for state in sorted(reached, key=repr):
                result = step(machine, state, hop.op, hop.args, pins)
                rules |= set(result.rules)
                allowed += [a.describe() for a in result.allowed if a.describe() not in allowed]
            judged.records.append(_record(obj, call, hop.op, hop.args, allowed=allowed[:20],
                                          ok=hop.id != culprit, rules=sorted(rules),
                                          before=describe, machine=machine))
        last = next(r for r in judged.records if not r.ok)
        judged.records = [r for r in judged.records if r.ok] + [last]
        judged.verdict = Verdict.FAIL
        judged.failed_rules = list(last.rules)
        judged.message = (f"{group[0].line}: {len(ops)} overlapping calls are not linearizable: "
                          f"no order of them is allowed by the model (from {describe})")
        return ""
    if len(ops) > MAX_GROUP:
        judged.judged += neutral
        return (f"{group[0].line}: {len(ops)} overlapping calls are linearizable, but the states "
                f"after more than {MAX_GROUP} are not followed")
    after = _ends(machine, ops, before, pins)
    if not after:  # pragma: no cover - the search found an order, so one ends somewhere
        return f"{group[0].line}: no end state after a linearizable group"
    tracker.states = after
    judged.judged += len(group)
    return ""


def _judge_group_unseen(obj: TraceObject, machine: Machine, tracker: Tracker, values: _Values,
                        mapped_all: list[tuple[Call, tuple[str, list[Args]] | str]],
                        judged: _Judged, pins: Pins) -> str:
    """Overlapping calls, some with values the recorder did not see: some order that respects
    real time, and some value of what was not seen, must be allowed by the model."""
    steps: list[tuple[Call, str, list[Args], int | None, dict[str, Any]]] = []
    for call, mapped in mapped_all:
        if mapped == "":
            continue
        if isinstance(mapped, str):
            return mapped + " (in a group of overlapping calls)"
        op, choices = mapped
        if call.unknown:
            judged.unseen.append(_unseen(call))
        code, outputs = (_observed(values, machine, op, call) if call.responded is not None
                         else (None, {}))
        steps.append((call, op, choices, code, outputs))
    first = mapped_all[0][0].line
    if len(steps) > MAX_GROUP:
        return (f"{first}: {len(steps)} overlapping calls with values the recorder did not see "
                f"are more than {MAX_GROUP}: not judged")
    before = tracker.states
    ends: set[State] = set()
    memo: set[tuple[frozenset[int], frozenset[State]]] = set()
    stuck: dict[int, set[int]] = {}  # calls placed so far -> calls that could not be placed next
    blocked: list[str] = []

    def walk(left: frozenset[int], states: frozenset[State]) -> None:
        if (left, states) in memo:
            return
        memo.add((left, states))
        if all(steps[i][0].responded is None for i in left):
            ends.update(states)  # a call that never returned may not have taken effect
        for i in left:
            call, op, choices, code, outputs = steps[i]
            if any(steps[j][0].responded is not None
                   and float(steps[j][0].responded or 0) < call.invoked for j in left if j != i):
                continue  # another call still to place returned before this one began
            nxt: set[State] = set()
            for state in states:
                for args in choices:
                    result = step(machine, state, op, args, pins)
                    if result.kind is Kind.UNDEFINED:  # the model lets anything happen
                        blocked.append(f"{call.line}: {op} is {result.kind.value}")
                    if result.kind is not Kind.DEFINED:
                        continue  # not offered: no order goes this way
                    nxt.update(a.next_state for a in result.allowed
                               if call.responded is None
                               or _admits(a, code, outputs, call.unknown))
            if nxt:
                walk(left - {i}, frozenset(nxt))
            else:
                stuck.setdefault(len(steps) - len(left), set()).add(i)

    walk(frozenset(range(len(steps))), before)
    if blocked:  # some order reaches a call the model leaves undefined: anything may follow
        return (f"{first}: in some order of {len(steps)} overlapping calls the model leaves "
                f"one undefined ({blocked[0]}): neither they nor what follows are judged")
    judged.linearizability = "linearizable" if ends else "not_linearizable"
    if ends:
        tracker.states = frozenset(ends)
        judged.judged += len(mapped_all)
        return ""
    culprits = stuck[max(stuck)] if stuck else set(range(len(steps)))
    rules: set[str] = set()
    records: list[StepRecord] = []
    for index, (call, op, choices, _code, _outputs) in enumerate(steps):
        allowed = []
        if index in culprits:
            for state in sorted(_reach(machine, steps, before, pins), key=repr):
                for args in choices:
                    result = step(machine, state, op, args, pins)
                    allowed += [a for a in result.allowed]
            rules |= {r for a in allowed for r in a.rules}
        records.append(_record(
            obj, call, op, _shown(choices),
            allowed=list(dict.fromkeys(a.describe() for a in allowed))[:20],
            ok=index not in culprits, rules=sorted({r for a in allowed for r in a.rules}),
            before=_describe(machine, before), machine=machine))
    # The calls some order could place first (those begun before the last culprit returned),
    # then the ones no order could go on with.
    cut = max((steps[i][0].responded or float("inf")) for i in culprits)
    judged.records += [r for r, (c, *_rest) in zip(records, steps, strict=True)
                       if r.ok and c.invoked < cut] + [r for r in records if not r.ok]
    judged.verdict = Verdict.FAIL
    judged.failed_rules = sorted(rules)
    names = ", ".join(f"{steps[i][0].line} {steps[i][1]}" for i in sorted(culprits))
    judged.message = (f"{first}: {len(steps)} overlapping calls are not linearizable: no order "
                      f"of them, for any value of what the recorder did not see, is allowed by "
                      f"the model (from {_describe(machine, before)}); no order can go on with "
                      f"{names}")
    return ""


def _reach(machine: Machine, steps: Sequence[tuple[Call, str, list[Args], int | None,
                                                     dict[str, Any]]],
           start: frozenset[State], pins: Pins) -> frozenset[State]:
    """Every state some prefix of allowed steps (any order, any unseen value) reaches."""
    seen = set(start)
    frontier = set(start)
    while frontier:
        new: set[State] = set()
        for state in frontier:
            for call, op, choices, code, outputs in steps:
                for args in choices:
                    result = step(machine, state, op, args, pins)
                    if result.kind is not Kind.DEFINED:
                        continue
                    new.update(a.next_state for a in result.allowed
                               if call.responded is None
                               or _admits(a, code, outputs, call.unknown))
        frontier = new - seen
        seen |= new
    return frozenset(seen)


def _apply(machine: Machine, states: frozenset[State], op: HistoryOp, pins: Pins
           ) -> frozenset[State]:
    nxt: set[State] = set()
    for state in states:
        result = step(machine, state, op.op, op.args, pins)
        if result.kind is not Kind.DEFINED:
            continue
        for allowed in result.allowed:
            if op.unknown or (op.code is not None and allowed.admits(op.code, dict(op.outputs))):
                nxt.add(allowed.next_state)
    return frozenset(nxt)


def _orders(ops: Sequence[HistoryOp], machine: Machine, start: frozenset[State], pins: Pins
            ) -> tuple[frozenset[State], frozenset[State]]:
    """Over every order of `ops` that respects real time and the model: the end states, and
    every state passed on the way. An operation with an unknown outcome may also be left out."""
    ends: set[State] = set()
    seen: set[State] = set(start)
    memo: set[tuple[frozenset[int], frozenset[State]]] = set()

    def walk(left: frozenset[int], states: frozenset[State]) -> None:
        if (left, states) in memo:
            return
        memo.add((left, states))
        if not any(not ops[i].unknown for i in left):
            ends.update(states)
        for i in left:
            op = ops[i]
            if any(ended is not None and ended < op.invoked
                   for j in left if j != i for ended in (ops[j].returned,)):
                continue  # another call still to place returned before this one began
            nxt = _apply(machine, states, op, pins)
            if nxt:
                seen.update(nxt)
                walk(left - {i}, nxt)

    walk(frozenset(range(len(ops))), start)
    return frozenset(ends), frozenset(seen)


def _undefined_on_the_way(machine: Machine, ops: Sequence[HistoryOp], start: frozenset[State],
                          pins: Pins) -> HistoryOp | None:
    """A call that some order respecting real time (over steps the model allows) reaches in a
    state where the model leaves it undefined; None if no order does."""
    memo: set[tuple[frozenset[int], frozenset[State]]] = set()

    def walk(left: frozenset[int], states: frozenset[State]) -> HistoryOp | None:
        if (left, states) in memo:
            return None
        memo.add((left, states))
        for i in left:
            op = ops[i]
            if any(ended is not None and ended < op.invoked
                   for j in left if j != i for ended in (ops[j].returned,)):
                continue
            if any(step(machine, state, op.op, op.args, pins).kind is Kind.UNDEFINED
                   for state in states):
                return op
            nxt = _apply(machine, states, op, pins)
            if nxt and (found := walk(left - {i}, nxt)) is not None:
                return found
        return None

    return walk(frozenset(range(len(ops))), start)


def _ends(machine: Machine, ops: Sequence[HistoryOp], start: frozenset[State], pins: Pins
          ) -> frozenset[State]:
    return _orders(ops, machine, start, pins)[0]


def _reachable(machine: Machine, ops: Sequence[HistoryOp], start: frozenset[State], pins: Pins
               ) -> frozenset[State]:
    return _orders(ops, machine, start, pins)[1]
