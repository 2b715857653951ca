"""Tests of the reference implementation itself: its objects, its threads, and its adapter.

The reference implementation is tested here as a concurrent program (events wake waiters on
other threads, held calls do not block the client, sessions do not leak threads). Where a test
pins a documented rule, a companion test builds the seeded fault that breaks the rule and shows
the same check failing, so the check is known to be able to fail.
"""

from __future__ import annotations

import ast
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from callgate.conformance.implementations.reference import com, kernel, rpc
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter, make_adapter
from callgate.conformance.implementations.reference.host import FAULTS, Host, ServerAction, WorkerPool
from callgate.conformance.protocol.adapter import FEATURES, Adapter, Observation, Request, Session, SlotSpec
from callgate.model import codes
from callgate.model.families import MACHINES
from callgate.model.transitions import Kind, Returns, Tracker
from callgate.model.variations import POINTS, check_pins

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "conformance" / "implementations" / "reference"
SHORT_MS = 20  # a wait that is expected to time out
LONG_MS = 2000  # a wait that is expected to succeed well before it ends

S_OK = codes.S_OK.value
RPC_S_CALLPENDING = codes.RPC_S_CALLPENDING.value
T = TypeVar("T")
COM_SLOT = SlotSpec("c", "com_call", {"factory": True, "cancellable": True})


@pytest.fixture
def adapter() -> Iterator[ReferenceAdapter]:
    made = ReferenceAdapter()
    yield made
    made.shutdown()


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    made = WorkerPool("test-reference")
    yield made
    made.shutdown()


def do(session: Session, slot: str, op: str, wait_ms: int = SHORT_MS, **args: str | int | bool
       ) -> Observation:
    return session.perform(Request(slot, op, args, wait_ms))


def run_in_thread(target: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    """Start `target` on a daemon thread; its result lands in the list when it returns."""
    results: list[T] = []

    def body() -> None:
        results.append(target())

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, results


# --- the implementation does not consult the model -------------------------------------------------


def test_reference_modules_import_nothing_from_the_model_but_codes() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "callgate.model" or name.startswith("callgate.model."):
                    assert name in ("callgate.model", "callgate.model.codes"), f"{path.name} imports {name}"


def test_importing_the_implementation_loads_no_stepping_logic() -> None:
    probe = ("import sys; import callgate.conformance.implementations.reference.com, "
             "callgate.conformance.implementations.reference.rpc, "
             "callgate.conformance.implementations.reference.rpc_client; "
             "print(sorted(m for m in sys.modules if m.startswith('callgate.model')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['callgate.model', 'callgate.model.codes']"


# --- system events and the container ----------------------------------------------------------------


def test_manual_reset_event_stays_signalled_through_waits() -> None:
    event = com.ManualResetEvent(Host())
    assert event.Wait(0, 0) == RPC_S_CALLPENDING  # created non-signalled
    assert event.Signal() == S_OK
    assert [event.Wait(0, 0) for _ in range(3)] == [S_OK, S_OK, S_OK]
    assert event.Reset() == S_OK
    assert event.Wait(0, SHORT_MS) == RPC_S_CALLPENDING


@pytest.mark.parametrize("faults, second_wait", [((), RPC_S_CALLPENDING),
                                                 (("std_event_no_auto_reset",), S_OK)])
def test_std_event_resets_itself_when_a_wait_sees_it(faults: tuple[str, ...],
                                                     second_wait: int) -> None:
    event = com.StdEvent(Host(faults=faults))
    event.Signal()
    assert event.Wait(0, 0) == S_OK
    assert event.Wait(0, 0) == second_wait


@pytest.mark.parametrize("cls", [com.ManualResetEvent, com.StdEvent])
def test_signal_from_another_thread_wakes_an_infinite_wait(cls: type[com.SystemEvent]) -> None:
    event = cls(Host())
    waiter, results = run_in_thread(lambda: event.Wait(0, com.INFINITE))
    time.sleep(0.05)
    assert waiter.is_alive(), "Wait(INFINITE) returned before any Signal"
    event.Signal()
    waiter.join(LONG_MS / 1000)
    assert not waiter.is_alive() and results == [S_OK]


def test_one_signal_of_an_auto_reset_event_releases_exactly_one_waiter() -> None:
    event = com.StdEvent(Host())
    waiters = [run_in_thread(lambda: event.Wait(0, 300)) for _ in range(3)]
    time.sleep(0.05)
    event.Signal()
    for thread, _ in waiters:
        thread.join(1.0)
    assert sorted(r for _, results in waiters for r in results) == \
        [S_OK, RPC_S_CALLPENDING, RPC_S_CALLPENDING]


@pytest.mark.parametrize("faults, last", [((), codes.RPC_E_OUT_OF_RESOURCES.value),
                                          (("container_accepts_64th",), S_OK)])
def test_container_refuses_the_64th_member(faults: tuple[str, ...], last: int) -> None:
    host = Host(faults=faults)
    container = com.SynchronizeContainer(host)
    added = [container.AddSynchronize(com.ManualResetEvent(host)) for _ in range(63)]
    assert added == [S_OK] * 63
    assert container.AddSynchronize(com.ManualResetEvent(host)) == last


def test_wait_multiple_returns_the_signalled_member() -> None:
    host = Host()
    container = com.SynchronizeContainer(host)
    assert container.WaitMultiple(0, 0) == (codes.RPC_E_NO_SYNC.value, None)
    members = [com.ManualResetEvent(host) for _ in range(5)]
    for member in members:
        container.AddSynchronize(member)
    assert container.WaitMultiple(0, SHORT_MS) == (codes.RPC_E_TIMEOUT.value, None)
    members[3].Signal()
    hr, found = container.WaitMultiple(0, 0)
    assert hr == S_OK and found is members[3]


def test_wait_on_an_sta_thread_pumps_messages() -> None:
    event = com.ManualResetEvent(Host())
    sta = kernel.ThreadContext("sta", kernel.Apartment.STA)
    seen: list[kernel.MSG] = []
    kernel.PostMessage(kernel.Window(sta, seen.append), kernel.WM_USER)
    with kernel.attach(sta):
        assert event.Wait(0, SHORT_MS) == RPC_S_CALLPENDING
    assert len(seen) == 1
    mta = kernel.ThreadContext("mta")
    kernel.PostMessage(kernel.Window(mta, seen.append), kernel.WM_USER)
    with kernel.attach(mta):
        event.Wait(0, 0)
    assert len(seen) == 1, "an MTA wait must not dispatch messages"


# --- COM call objects and the test server ------------------------------------------------------------


def new_call_object(pool: WorkerPool, host: Host | None = None,
                    cancellable: bool = True) -> tuple[com.CallObject, com.TestServer]:
    server = com.TestServer(host or Host(), pool, implements_call_factory=True,
                            cancellation_enabled=cancellable)
    hr, call_object = com.ServerObject(server).CreateCall(com.IID.AsyncIFoo, None,
                                                          com.IID.AsyncIFoo)
    assert hr == S_OK and isinstance(call_object, com.CallObject)
    return call_object, server


@pytest.mark.serial  # bounds the wall time: run alone
def test_begin_returns_while_the_server_holds_the_call(pool: WorkerPool) -> None:
    call_object, server = new_call_object(pool)
    started = time.perf_counter()
    assert call_object.Begin_M() == S_OK
    assert time.perf_counter() - started < 0.5
    held = call_object.current_call
    assert held is not None and held.held and not held.finished.wait(0.05)
    assert call_object._sync.Wait(0, 0) == RPC_S_CALLPENDING
    assert call_object.Begin_M() == com.BEGIN_PENDING_CODE
    assert server.held_calls() == [held]
    server.shutdown()


def test_a_seeded_fault_lets_a_second_begin_through(pool: WorkerPool) -> None:
    call_object, server = new_call_object(pool, Host(faults=["begin_accepts_second"]))
    assert call_object.Begin_M() == S_OK
    assert call_object.Begin_M() == S_OK
    server.shutdown()


def test_finish_returns_the_outputs_of_this_call(pool: WorkerPool) -> None:
    call_object, _ = new_call_object(pool)
    for out in (2, 1):
        assert call_object.Begin_M() == S_OK
        call = call_object.current_call
        assert call is not None
        waiter, results = run_in_thread(lambda: call_object._sync.Wait(0, com.INFINITE))
        assert call.mailbox.send(ServerAction.SIGNAL, out=out).code == S_OK
        waiter.join(1.0)
        assert results == [S_OK]
        assert call_object.Finish_M() == (S_OK, out)
    assert call_object.Finish_M() == (codes.RPC_E_CALL_COMPLETE.value, None)


def test_a_cancelled_call_ends_when_the_server_returns(pool: WorkerPool) -> None:
    # Seed 000: "If Wait returns S_OK, the Begin_ method has returned", cancelled or not.
    call_object, server = new_call_object(pool)
    call_object.Begin_M()
    call = call_object.current_call
    assert call is not None
    assert call_object.Cancel(0) == S_OK
    assert call_object._sync.Wait(0, 0) == RPC_S_CALLPENDING
    assert call.mailbox.send(ServerAction.TEST_CANCEL).code == codes.RPC_E_CALL_CANCELED.value
    assert call_object.Cancel(0) == com.CANCELLED_CODE
    assert server.held_calls() == [call] and not call.abandoned
    call.mailbox.send(ServerAction.SIGNAL, out=2)
    assert server.held_calls() == [] and call_object._sync.Wait(0, 0) == S_OK
    assert call_object.Finish_M() == (com.CANCELLED_CODE, None)
    assert call_object.current_call is None and call_object.Finish_M()[0] == \
        codes.RPC_E_CALL_COMPLETE.value


def test_cancel_is_refused_when_the_server_thread_did_not_enable_it(pool: WorkerPool) -> None:
    call_object, server = new_call_object(pool, cancellable=False)
    call_object.Begin_M()
    assert call_object.Cancel(0) == codes.CO_E_CANCEL_DISABLED.value
    assert call_object.TestCancel() == RPC_S_CALLPENDING
    server.shutdown()


def test_impersonation_is_refused_once_the_server_signalled(adapter: ReferenceAdapter) -> None:
    session = adapter.open_session([COM_SLOT])
    do(session, "c", "CreateCall", riid="async", aggregate=True)
    do(session, "c", "Begin_")
    assert do(session, "c", "server_impersonate").code == S_OK
    signalled = do(session, "c", "server_signal", out=1, then_impersonate=True)
    assert signalled.code == S_OK
    assert signalled.outputs["impersonate"] == codes.RPC_E_CALL_COMPLETE.value
    assert do(session, "c", "Finish_") == Observation(S_OK, {"out": 1})
    assert do(session, "c", "Release").code == 0
    session.close()


# --- asynchronous RPC ----------------------------------------------------------------------------------

NOTIFYING = ("Event", "Apc", "Ioc", "Hwnd", "Callback")


def rpc_session(adapter: Adapter, notify: str) -> Session:
    session = adapter.open_session([SlotSpec("r", "rpc_call")])
    assert do(session, "r", "RpcAsyncInitializeHandle", size="exact").code == 0
    assert do(session, "r", "AsyncCall", notify=notify, binding="good").code == 0
    return session


def test_initialize_handle_checks_the_size_and_sets_the_fields() -> None:
    state = rpc.RPC_ASYNC_STATE(UserInfo="mine", NotificationType=3)
    assert rpc.RpcAsyncInitializeHandle(state, rpc.SIZEOF_RPC_ASYNC_STATE + 1) == 87
    assert state.Signature == 0
    assert rpc.RpcAsyncInitializeHandle(state, rpc.SIZEOF_RPC_ASYNC_STATE) == 0
    assert (state.Signature, state.Lock, state.Flags, state.StubInfo, state.RuntimeInfo,
            state.Reserved) == (0x43595341, 0, 0, None, None, [0, 0, 0, 0])
    assert (state.UserInfo, state.NotificationType) == ("mine", 3)


@pytest.mark.parametrize("notify", NOTIFYING)
def test_each_notification_arrives_exactly_once(adapter: ReferenceAdapter, notify: str) -> None:
    session = rpc_session(adapter, notify)
    assert do(session, "r", "wait_notification").code == 0
    assert do(session, "r", "server_complete", reply=2).code == 0
    assert do(session, "r", "wait_notification", wait_ms=LONG_MS) == Observation(1, {"Event": 0})
    assert do(session, "r", "wait_notification").code == 0
    assert do(session, "r", "RpcAsyncCompleteCall") == \
        Observation(0, {"reply": 2, "resources_open": True})
    session.close()


def test_a_seeded_fault_delivers_the_notification_twice() -> None:
    faulty = ReferenceAdapter(faults=["notification_twice"])
    session = rpc_session(faulty, "Callback")
    do(session, "r", "server_complete", reply=1)
    assert do(session, "r", "wait_notification", wait_ms=LONG_MS).code == 1
    assert do(session, "r", "wait_notification", wait_ms=LONG_MS).code == 1
    session.close()
    faulty.shutdown()


def test_polling_sees_pending_then_final_without_notifications(adapter: ReferenceAdapter) -> None:
    session = rpc_session(adapter, "None")
    assert do(session, "r", "RpcAsyncGetCallStatus").code == 997
    do(session, "r", "server_complete", reply=1)
    assert do(session, "r", "RpcAsyncGetCallStatus").code == 0
    assert do(session, "r", "wait_notification").code == 0
    session.close()


def test_apc_runs_on_the_issuing_thread_only_in_an_alertable_wait(pool: WorkerPool) -> None:
    runtime = rpc.RpcRuntime(Host(), pool)
    client = kernel.ThreadContext("client")
    ran_on: list[int] = []
    state = rpc.RPC_ASYNC_STATE()
    rpc.RpcAsyncInitializeHandle(state, rpc.SIZEOF_RPC_ASYNC_STATE)
    state.NotificationType = rpc.RPC_NOTIFICATION_TYPES.RpcNotificationTypeApc
    state.u.APC.NotificationRoutine = lambda p, c, e: ran_on.append(threading.get_ident())
    with kernel.attach(client):
        runtime.TestProc_async(rpc.RpcBinding(), state)
    server_call = state.RuntimeInfo.server if isinstance(state.RuntimeInfo, rpc.ClientCall) \
        else None
    assert server_call is not None
    runtime.test_server.command(server_call, ServerAction.COMPLETE, reply=1)
    with kernel.attach(client):
        assert kernel.SleepEx(0, False) == 0 and ran_on == []  # not alertable: the APC waits
        assert kernel.SleepEx(0, True) == kernel.WAIT_IO_COMPLETION
    assert ran_on == [threading.get_ident()]


def test_callback_runs_on_another_thread() -> None:
    pool = WorkerPool("callback-test")
    runtime = rpc.RpcRuntime(Host(), pool)
    ran: list[tuple[int, int]] = []
    arrived = threading.Event()
    state = rpc.RPC_ASYNC_STATE()
    rpc.RpcAsyncInitializeHandle(state, rpc.SIZEOF_RPC_ASYNC_STATE)
    state.NotificationType = rpc.RPC_NOTIFICATION_TYPES.RpcNotificationTypeCallback

    def routine(p: rpc.RPC_ASYNC_STATE, context: object, event: rpc.RPC_ASYNC_EVENT) -> None:
        ran.append((threading.get_ident(), int(event)))
        arrived.set()

    state.u.NotificationRoutine = routine
    runtime.TestProc_async(rpc.RpcBinding(), state)
    assert isinstance(state.RuntimeInfo, rpc.ClientCall) and state.RuntimeInfo.server
    runtime.test_server.command(state.RuntimeInfo.server, ServerAction.COMPLETE, reply=1)
    assert arrived.wait(LONG_MS / 1000)
    assert ran[0][0] != threading.get_ident() and ran[0][1] == rpc.RPC_ASYNC_EVENT.RpcCallComplete
    pool.shutdown()


def test_client_complete_call_is_pending_while_the_call_is_outstanding(
        adapter: ReferenceAdapter) -> None:
    session = rpc_session(adapter, "Event")
    assert do(session, "r", "RpcAsyncCompleteCall").code == 997
    assert do(session, "r", "RpcAsyncGetCallStatus").code == 997
    assert do(session, "r", "server_handle_live").code == 1
    do(session, "r", "server_complete", reply=1)
    assert do(session, "r", "RpcAsyncCompleteCall").code == 0
    assert do(session, "r", "RpcAsyncGetCallStatus").code == rpc.UNUSED_HANDLE_STATUS
    session.close()


def test_abortive_cancel_completes_the_call_at_once(adapter: ReferenceAdapter) -> None:
    session = rpc_session(adapter, "Event")
    assert do(session, "r", "RpcAsyncCancelCall", abort=True).code == 0
    assert do(session, "r", "wait_notification", wait_ms=LONG_MS).code == 1
    assert do(session, "r", "RpcAsyncCompleteCall").code == codes.RPC_S_CALL_CANCELLED.value
    assert do(session, "r", "server_handle_live").code == 1  # the server still holds its side
    assert do(session, "r", "server_test_cancel", timeout="zero").code == 0
    do(session, "r", "server_complete", reply=1)
    assert do(session, "r", "server_handle_live").code == 0
    session.close()


def test_non_abortive_cancel_keeps_the_client_waiting(adapter: ReferenceAdapter) -> None:
    session = rpc_session(adapter, "Event")
    assert do(session, "r", "server_test_cancel", timeout="zero").code == codes.RPC_S_CALL_IN_PROGRESS.value
    assert do(session, "r", "RpcAsyncCancelCall", abort=False).code == 0
    assert do(session, "r", "RpcAsyncCompleteCall").code == 997
    assert do(session, "r", "server_test_cancel", timeout="zero").code == 0
    do(session, "r", "server_complete", reply=2)
    assert do(session, "r", "RpcAsyncCompleteCall").outputs["reply"] == 2
    session.close()


@pytest.mark.parametrize("command, args, client_code", [
    ("server_complete", {"reply": 2}, 0),
    ("server_abort", {"code": 5}, 5),
    ("server_raise", {"code": 8}, 8),
])
def test_server_handle_is_destroyed_when_the_call_ends(adapter: ReferenceAdapter, command: str,
                                                       args: dict[str, int],
                                                       client_code: int) -> None:
    session = rpc_session(adapter, "Event")
    assert do(session, "r", "server_handle_live").code == 1
    do(session, "r", command, **args)
    assert do(session, "r", "server_handle_live").code == 0
    assert do(session, "r", "RpcAsyncCompleteCall").code == client_code
    session.close()


def test_a_seeded_fault_keeps_the_server_handle() -> None:
    faulty = ReferenceAdapter(faults=["server_handle_kept"])
    session = rpc_session(faulty, "Event")
    do(session, "r", "server_complete", reply=1)
    assert do(session, "r", "server_handle_live").code == 1
    session.close()
    faulty.shutdown()


def test_invalid_and_idle_calls(adapter: ReferenceAdapter) -> None:
    session = adapter.open_session([SlotSpec("r", "rpc_call")])
    for api in ("RpcAsyncGetCallStatus", "RpcAsyncCompleteCall", "RpcAsyncCancelCall",
                "RpcAsyncAbortCall"):
        assert do(session, "r", "invalid_handle", api=api).code == 1914
    assert do(session, "r", "server_test_cancel_idle").code == codes.RPC_S_NO_CALL_ACTIVE.value
    assert do(session, "r", "sync_call", reply=2) == Observation(0, {"reply": 2})
    do(session, "r", "RpcAsyncInitializeHandle", size="exact")
    assert do(session, "r", "AsyncCall", notify="Event", binding="bad").code not in (0, 997)
    assert do(session, "r", "server_handle_live").code == 0
    session.close()


# --- sessions: closing, threads, the adapter's declarations -------------------------------------------


def hold_everything(session: Session) -> None:
    do(session, "c", "CreateCall", riid="async", aggregate=False)
    do(session, "c", "Begin_")
    do(session, "r", "RpcAsyncInitializeHandle", size="exact")
    do(session, "r", "AsyncCall", notify="Callback", binding="good")


@pytest.mark.serial  # bounds the wall time: run alone
def test_closing_a_session_lets_held_calls_and_blocked_waits_go(adapter: ReferenceAdapter) -> None:
    session = adapter.open_session([COM_SLOT, SlotSpec("r", "rpc_call")])
    hold_everything(session)
    waiter, results = run_in_thread(
        lambda: do(session, "c", "Wait", timeout="infinite").code)
    time.sleep(0.05)
    assert waiter.is_alive()
    started = time.perf_counter()
    session.close()
    assert time.perf_counter() - started < 1.0
    waiter.join(1.0)
    assert not waiter.is_alive() and results and results[0] != S_OK


def test_many_sessions_do_not_leak_threads(adapter: ReferenceAdapter) -> None:
    before = threading.active_count()
    for _ in range(300):
        session = adapter.open_session([COM_SLOT, SlotSpec("r", "rpc_call")])
        hold_everything(session)
        session.close()
    assert threading.active_count() <= before + 8
    assert adapter.pool.threads <= 8
    assert not adapter.pool.failures


def test_capabilities_declare_every_feature_and_pin_every_variation_point(
        adapter: ReferenceAdapter) -> None:
    capabilities = adapter.capabilities()
    assert (capabilities.implementation, capabilities.version) == ("callgate-reference", "0.1.0")
    assert capabilities.features == FEATURES
    assert set(capabilities.pins) == {p.name for p in POINTS}
    check_pins(capabilities.pins)
    assert isinstance(adapter, Adapter)


def test_make_adapter_passes_options_and_rejects_unknown_ones() -> None:
    made = make_adapter(jitter=0.001, seed=3, faults=["notification_twice"])
    assert made.host.faults == {"notification_twice"} and made.host.jitter == 0.001
    assert "notification_twice" in made.capabilities().notes
    with pytest.raises(TypeError, match="unknown option"):
        make_adapter(speed=2)
    with pytest.raises(ValueError, match="unknown fault"):
        ReferenceAdapter(faults=["no_such_fault"])
    assert all(fault.rule for fault in FAULTS.values())


# --- agreement with the model on random walks ---------------------------------------------------------

CONFIGS = {"com_call": ({"factory": True, "cancellable": True},
                        {"factory": True, "cancellable": False},
                        {"factory": False, "cancellable": True}),
           "event": ({},), "container": ({},), "cowait": ({},), "rpc_call": ({},),
           "thread_cancel": ({},), "rpc_order": ({},),
           "rpc_pipe": ({},), "rpc_notif": ({},)}


def walk(adapter: Adapter, seed: int, cases: int, length: int,
         machines: tuple[str, ...] = tuple(sorted(MACHINES))) -> list[str]:
    """Random walks of the model's defined operations; the deviations found, as traces."""
    rng = random.Random(seed)
    pins = adapter.capabilities().pins
    deviations: list[str] = []
    for _ in range(cases):
        name = rng.choice(machines)
        machine = MACHINES[name]
        config = rng.choice(CONFIGS[name])
        tracker = Tracker(machine, pins, [machine.make(**config) if config else machine.initial[0]])
        session = adapter.open_session([SlotSpec("s", name, config)])
        trace: list[str] = []
        try:
            for _ in range(length):
                choices = [(op.name, args) for op in machine.operations
                           for args in op.all_args() if tracker.kind(op.name, args) is Kind.DEFINED]
                if name == "rpc_call" and any(machine.view(s)["server"] == "held"
                                              for s in tracker.states):
                    # The model forgets a held call's cancel when the client re-initialises its
                    # handle (reported); keep the walk away from that.
                    choices = [c for c in choices if c[0] != "RpcAsyncInitializeHandle"]
                op, args = rng.choice(choices)
                may_arrive = any(isinstance(a.code, Returns) and a.code.value == 1
                                 for a in tracker.expected(op, args))
                wait = LONG_MS if op == "wait_notification" and may_arrive else 5
                seen = session.perform(Request("s", op, dict(args), wait))
                trace.append(f"{op}{dict(args)} -> {seen.code:#x} {dict(seen.outputs)}")
                if not tracker.observe(op, args, seen.code, seen.outputs).ok:
                    deviations.append(f"{name} {config}: " + "; ".join(trace))
                    break
        finally:
            session.close()
    return deviations


def test_random_walks_agree_with_the_model_under_the_declared_pins(
        adapter: ReferenceAdapter) -> None:
    assert walk(adapter, seed=11, cases=80, length=25) == []


def test_random_walks_catch_a_seeded_fault() -> None:
    faulty = ReferenceAdapter(faults=["wait_ok_before_signal"])
    try:
        found = walk(faulty, seed=11, cases=40, length=25, machines=("com_call",))
    finally:
        faulty.shutdown()
    # Every deviation ends at a wait on a pending call, where the fault lies.
    assert found and all(d.split(": ", 1)[1].rsplit("; ", 1)[-1].startswith(("Wait", "probe_sta_wait"))
                         for d in found)
