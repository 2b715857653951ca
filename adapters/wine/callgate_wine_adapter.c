/*
 * callgate_wine_adapter.c: a callgate adapter that tests a real Windows implementation (Wine's
 * ole32 and rpcrt4, or Windows itself) through the JSON-lines protocol (docs/adapter-protocol.md,
 * protocol version 1). Built with mingw-w64 (x86_64-w64-mingw32-gcc) and run under Wine.
 *
 * What it drives, with the real APIs:
 *
 *   event      ISynchronize on CLSID_ManualResetEvent and CLSID_StdEvent (CoCreateInstance, Signal,
 *              Reset, Wait), ISynchronizeHandle::GetHandle, ISynchronizeEvent::SetEventHandle.
 *   container  CoCreateInstance(CLSID_SynchronizeContainer): whatever the runtime answers.
 *   rpc_call   RpcAsyncInitializeHandle, and asynchronous RPC calls over ncalrpc inside this
 *              process: a hand-written [async] procedure (Oicf format string, Oi2 flags 0xC4:
 *              has return, has extensions, has async handle) called with NdrAsyncClientCall and
 *              dispatched by NdrAsyncServerCall to a manager routine that holds the call until
 *              the harness says server_complete / server_abort / server_raise /
 *              server_test_cancel. Notification by Event, Callback, APC or None;
 *              RpcAsyncGetCallStatus, RpcAsyncCompleteCall, RpcAsyncCancelCall, RpcAsyncAbortCall,
 *              RpcServerTestCancel, and a synchronous procedure for sync_call.
 *
 *   com_call   a COM test server object with ICallFactory (callgate_wine_com.c), through a
 *              standard proxy (--com=marshaled, the default) or used in its own apartment
 *              (--com=inproc); the handshake declares which as the pin call_object_origin, and
 *              its notes say what the proxy answered for ICallFactory.
 *
 * Some Wine calls crash (RpcServerTestCancel is unimplemented and raises 0x80000100;
 * RpcAsyncCompleteCall on a handle that never carried a call, or a second client
 * RpcAsyncCompleteCall, dereferences NULL). The adapter makes those client calls on a thread of
 * its own with a guard: a vectored exception handler (and, for an RPC exception that escapes the
 * call, the unhandled-exception filter) records the exception and ends only that
 * thread, and the request is answered with the exception code as its outcome and the output
 * `raised: true` (a failure the model judges, with evidence). Every request is also carried out
 * inside a frame-based exception guard (callgate_wine_guard.h): an exception of any code that
 * escapes an API call on the request thread, an RPC status raised with RpcRaiseException as much
 * as an access violation, is answered the same way, and the process serves the next request
 * (the op adapter_check_raise, outside the model, checks this). RpcAsyncCompleteCall, which Wine
 * blocks in until the reply arrives, also runs on such a thread; if it has not returned within
 * the request's wait_ms plus COMPLETE_GRACE_MS, the answer is WAIT_TIMEOUT (258) with the output
 * `returned: false`. Both are this adapter's encodings of what has no return code, not codes
 * Wine returned. As a second line of defence callgate's `wine` adapter (conformance/implementations/wine.py) runs
 * every session with an rpc_call slot in a process of this program of its own, and ends that
 * process after a session in which a call raised or blocked, so anything that still kills the
 * process costs one case, and abandoned runtime state never reaches the next case.
 *
 * A notification belongs to its call: one that the runtime delivers after the client completed
 * (Wine queues a finished call's APC, which runs at this thread's next alertable wait) is
 * forgotten before the handle is initialised again or carries a new call
 * (forget_earlier_notifications).
 *
 * Requests are carried out one at a time on the main thread (a COM MTA thread), in the order
 * they arrive, and the handshake says so ("concurrent":false): callgate's parallel cases, which
 * need requests served at once, are not applicable. Diagnostics go to stderr.
 */

#define COBJMACROS
#include <windows.h>
#include <objbase.h>
#include <objidl.h>
#include <rpc.h>
#include <rpcasync.h>
#include <rpcndr.h>
#include <fcntl.h>
#include <io.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JSON-lines layer, shared with the example adapter: examples/c-adapter/callgate_jsonl.h
 * (the build adds that directory to the include path). */
#define CALLGATE_JSONL_PROGRAM "callgate-wine-adapter"
#define CALLGATE_JSONL_IMPLEMENTATION
#include "callgate_jsonl.h"
#include "callgate_wine_guard.h" /* guarded_call: an exception escaping an API call is `raised` */

/* How long the adapter waits for the runtime before it answers with an error instead. */
#define ARRIVAL_MS 3000   /* a dispatched call to reach the manager routine */
#define COMMAND_MS 5000   /* the manager routine to carry out a server_* command */
#define COMPLETE_GRACE_MS 250 /* RpcAsyncCompleteCall to return, beyond the request's wait_ms */
#define SETTLE_MS 250     /* a finished call's notification to arrive before the handle is reused */

/* mingw's libuuid lacks these CLSIDs (objidl.idl names them; the values are Microsoft's). */
static const CLSID CLSID_StdEvent_ = {0x0000032b, 0, 0, {0xC0, 0, 0, 0, 0, 0, 0, 0x46}};
static const CLSID CLSID_ManualResetEvent_ = {0x0000032c, 0, 0, {0xC0, 0, 0, 0, 0, 0, 0, 0x46}};
static const CLSID CLSID_SynchronizeContainer_ = {0x0000032d, 0, 0, {0xC0, 0, 0, 0, 0, 0, 0, 0x46}};

static const char *code_name(uint32_t value)
{
    switch (value) {
    case 0: return NULL; /* S_OK and RPC_S_OK: callgate names codes itself */
    case 0x80004002u: return "E_NOINTERFACE";
    case 0x80010115u: return "RPC_S_CALLPENDING";
    case 0x8001011Fu: return "RPC_E_TIMEOUT";
    case 0x80040154u: return "REGDB_E_CLASSNOTREG";
    case 87: return "RPC_S_INVALID_ARG";
    case 997: return "RPC_S_ASYNC_CALL_PENDING";
    case 1914: return "RPC_S_INVALID_ASYNC_HANDLE";
    case 1818: return "RPC_S_CALL_CANCELLED";
    default: return NULL;
    }
}

/* ======================================================================================== */
/* The test interface: hand-written stubs for                                               */
/*     [uuid(5c2e3a51-6f0b-4b7e-9a57-1c0a11ca11a7), version(1.0)] interface callgate_test {  */
/*         [async] long TestProc([in] handle_t h, [in] long call);                          */
/*         long SyncProc([in] handle_t h, [in] long value); }                               */
/* No available widl generates [async] stubs, so the format strings are written out here,  */
/* as MIDL writes them for x64 (Oicf).                                                       */
/* ======================================================================================== */

void *__RPC_USER MIDL_user_allocate(SIZE_T size) { return malloc(size); }
void __RPC_USER MIDL_user_free(void *p) { free(p); }

#define PROC_FORMAT_BYTES 85
static const struct {
    short pad;
    unsigned char format[PROC_FORMAT_BYTES];
} proc_format = {0, {
    /* 0: TestProc, asynchronous */
    0x00,                   /* explicit handle */
    0x68,                   /* Oi flags: new init routines, has RPC flags, has comm or fault */
    0x00, 0x00, 0x00, 0x00, /* RPC flags */
    0x00, 0x00,             /* procedure 0 */
    0x20, 0x00,             /* stack size 32: pAsync, h, call, return value */
    0x32, 0x00,             /* FC_BIND_PRIMITIVE */
    0x08, 0x00,             /* the handle at stack offset 8 (pAsync comes first) */
    0x08, 0x00,             /* client buffer size */
    0x08, 0x00,             /* server buffer size */
    0xc4,                   /* Oi2 flags: has return, has extensions, has async handle */
    0x02,                   /* 2 parameters: call, return value */
    0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* extensions: size 10 */
    0x48, 0x00, 0x10, 0x00, 0x08, 0x00, /* call: in, base type, offset 16, FC_LONG */
    0x70, 0x00, 0x18, 0x00, 0x08, 0x00, /* return value: out, return, base type, offset 24 */
    /* 42: SyncProc, synchronous */
    0x00, 0x68, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00,             /* procedure 1 */
    0x18, 0x00,             /* stack size 24: h, value, return value */
    0x32, 0x00, 0x00, 0x00, /* FC_BIND_PRIMITIVE at stack offset 0 */
    0x08, 0x00, 0x08, 0x00,
    0x44,                   /* Oi2 flags: has return, has extensions */
    0x02,
    0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x48, 0x00, 0x08, 0x00, 0x08, 0x00, /* value: offset 8 */
    0x70, 0x00, 0x10, 0x00, 0x08, 0x00, /* return value: offset 16 */
    0x00
}};
static const struct { short pad; unsigned char format[3]; } type_format = {0, {0, 0, 0}};
#define SYNC_PROC_OFFSET 42

static const RPC_CLIENT_INTERFACE client_interface = {
    sizeof(RPC_CLIENT_INTERFACE),
    {{0x5c2e3a51, 0x6f0b, 0x4b7e, {0x9a, 0x57, 0x1c, 0x0a, 0x11, 0xca, 0x11, 0xa7}}, {1, 0}},
    {{0x8a885d04, 0x1ceb, 0x11c9, {0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60}}, {2, 0}},
    0, 0, 0, 0, 0, 0};
static RPC_BINDING_HANDLE auto_handle;
static const MIDL_STUB_DESC client_stub = {
    (void *)&client_interface, MIDL_user_allocate, MIDL_user_free, {&auto_handle}, 0, 0, 0, 0,
    type_format.format, 1, 0x50002, 0, 0x50200ca, 0, 0, 0, 1, 0, 0, 0};

static void __cdecl TestProc_manager(PRPC_ASYNC_STATE pAsync, handle_t h, long call);
static long __cdecl SyncProc_manager(handle_t h, long value);

static const MIDL_SERVER_INFO server_info;
static const RPC_SERVER_INTERFACE server_interface;
static const MIDL_STUB_DESC server_stub = {
    (void *)&server_interface, MIDL_user_allocate, MIDL_user_free, {0}, 0, 0, 0, 0,
    type_format.format, 1, 0x50002, 0, 0x50200ca, 0, 0, 0, 1, 0, 0, 0};
static RPC_DISPATCH_FUNCTION dispatch_functions[] = {NdrAsyncServerCall, NdrServerCall2, 0};
static RPC_DISPATCH_TABLE dispatch_table = {2, dispatch_functions, 0};
static const SERVER_ROUTINE server_routines[] = {(SERVER_ROUTINE)(void *)TestProc_manager,
                                                 (SERVER_ROUTINE)(void *)SyncProc_manager};
static const unsigned short format_offsets[] = {0, SYNC_PROC_OFFSET};
static const MIDL_SERVER_INFO server_info = {
    &server_stub, server_routines, proc_format.format, format_offsets, 0, 0, 0, 0};
static const RPC_SERVER_INTERFACE server_interface = {
    sizeof(RPC_SERVER_INTERFACE),
    {{0x5c2e3a51, 0x6f0b, 0x4b7e, {0x9a, 0x57, 0x1c, 0x0a, 0x11, 0xca, 0x11, 0xa7}}, {1, 0}},
    {{0x8a885d04, 0x1ceb, 0x11c9, {0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60}}, {2, 0}},
    &dispatch_table, 0, 0, 0, &server_info, 0x04000000};

/* The client stubs, as MIDL would generate them. */
static long TestProc_async(PRPC_ASYNC_STATE pAsync, handle_t h, long call)
{
    CLIENT_CALL_RETURN r = NdrAsyncClientCall((PMIDL_STUB_DESC)&client_stub,
                                              (PFORMAT_STRING)proc_format.format, pAsync, h, call);
    return (long)r.Simple; /* 0, or the exception code (Oi flag "has comm or fault") */
}

static long SyncProc(handle_t h, long value)
{
    CLIENT_CALL_RETURN r = NdrClientCall2((PMIDL_STUB_DESC)&client_stub,
                                          (PFORMAT_STRING)proc_format.format + SYNC_PROC_OFFSET,
                                          h, value);
    return (long)r.Simple;
}

/* ======================================================================================== */
/* The test server: the manager routine holds each call until the harness commands it.      */
/* ======================================================================================== */

enum command { CMD_NONE, CMD_COMPLETE, CMD_ABORT, CMD_RAISE, CMD_TEST_CANCEL, CMD_LET_GO,
               CMD_HAND_OFF };

struct server_call {
    long id;
    HANDLE arrived;      /* manual reset: the manager routine holds the call */
    HANDLE command_set;  /* auto reset: a command waits in `command` */
    HANDLE done;         /* auto reset: the command was carried out */
    volatile LONG held;  /* the manager routine still holds the server handle */
    volatile LONG gone;  /* the manager routine has returned */
    enum command command;
    long argument;
    uint32_t status;     /* what the runtime returned to the manager routine */
    volatile LONG exception; /* an exception the runtime raised in the manager routine, or 0 */
    PRPC_ASYNC_STATE pAsync; /* the server's async handle */
    volatile LONG stamp; /* rpc_order: when the routine was entered (dispatch_counter) */
};

#define MAX_CALLS 4096
static CRITICAL_SECTION calls_lock;
static struct server_call *calls[MAX_CALLS];
static long next_call_id = 1;
static char endpoint[64], bad_endpoint[64];
static int server_started;
/* rpc_order (callgate_wine_order.c): one counter stamps every routine entry, in order. */
static volatile LONG dispatch_counter, sync_stamp;

static struct server_call *call_new(void)
{
    struct server_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->arrived = CreateEventW(NULL, TRUE, FALSE, NULL);
    c->command_set = CreateEventW(NULL, FALSE, FALSE, NULL);
    c->done = CreateEventW(NULL, FALSE, FALSE, NULL);
    EnterCriticalSection(&calls_lock);
    c->id = next_call_id++;
    calls[c->id % MAX_CALLS] = c;
    LeaveCriticalSection(&calls_lock);
    return c;
}

static struct server_call *call_find(long id)
{
    EnterCriticalSection(&calls_lock);
    struct server_call *c = calls[id % MAX_CALLS];
    if (c && c->id != id)
        c = NULL;
    LeaveCriticalSection(&calls_lock);
    return c;
}

/* The call whose command the current thread is carrying out: an exception raised by the runtime
 * there (Wine raises one for each unimplemented function) unwinds the manager routine into the
 * RPC runtime's handler, so the harness is told here, before the unwinding. */
static DWORD current_call_slot = TLS_OUT_OF_INDEXES;

/* A client call the adapter makes on a thread of its own because it may crash the runtime (a
 * NULL dereference, an unimplemented function): the exception is recorded and only that thread
 * ends, so the call is reported with the exception code as its outcome, and the process lives. */
struct guard {
    volatile LONG exception;
};
static DWORD guard_slot = TLS_OUT_OF_INDEXES;

/* Errors (severity bits 11) and Wine's unimplemented-function exception; RPC exceptions raised
 * with RpcRaiseException carry small status codes and pass. */
static int is_crash(DWORD code)
{
    return (code & 0xC0000000u) == 0xC0000000u || code == 0x80000100u;
}

static LONG CALLBACK exception_watch(EXCEPTION_POINTERS *info)
{
    DWORD code = info->ExceptionRecord->ExceptionCode;
    struct guard *g = guard_slot == TLS_OUT_OF_INDEXES ? NULL : TlsGetValue(guard_slot);
    if (g && is_crash(code)) {
        g->exception = (LONG)code;
        fprintf(stderr, "callgate-wine-adapter: exception 0x%08lX in a guarded call; ending "
                        "its thread\n", (unsigned long)code);
        ExitThread(code);
    }
    struct server_call *c = current_call_slot == TLS_OUT_OF_INDEXES
                            ? NULL : TlsGetValue(current_call_slot);
    if (c && !c->exception && is_crash(code)) {
        TlsSetValue(current_call_slot, NULL);
        c->exception = (LONG)info->ExceptionRecord->ExceptionCode;
        InterlockedExchange(&c->held, 0);
        InterlockedExchange(&c->gone, 1);
        SetEvent(c->done);
    }
    return EXCEPTION_CONTINUE_SEARCH;
}

/* The last chance: an exception nobody handled, on a guarded call's thread, whatever its code.
 * RPC exceptions (RpcRaiseException with a status such as RPC_X_BAD_STUB_DATA, 1783) pass the
 * vectored watch above, because the runtime raises and catches such codes internally; when one
 * escapes the API call instead, it reaches this filter, and the call is reported as `raised`
 * with its code rather than ending the process. Outside a guarded call it does nothing, and the
 * process dies as before (the harness records that as evidence). */
static LONG WINAPI last_chance(EXCEPTION_POINTERS *info)
{
    DWORD code = info->ExceptionRecord->ExceptionCode;
    struct guard *g = guard_slot == TLS_OUT_OF_INDEXES ? NULL : TlsGetValue(guard_slot);
    if (g) {
        g->exception = (LONG)code;
        fprintf(stderr, "callgate-wine-adapter: unhandled exception 0x%08lX escaped a guarded "
                        "call; ending its thread\n", (unsigned long)code);
        ExitThread(code);
    }
    return EXCEPTION_CONTINUE_SEARCH;
}

static void __cdecl TestProc_manager(PRPC_ASYNC_STATE pAsync, handle_t h, long id)
{
    (void)h;
    struct server_call *c = call_find(id);
    LONG_PTR reply = 0;
    if (!c) { /* not ours: finish it at once */
        RpcAsyncCompleteCall(pAsync, &reply);
        return;
    }
    c->pAsync = pAsync;
    c->stamp = InterlockedIncrement(&dispatch_counter);
    InterlockedExchange(&c->held, 1);
    SetEvent(c->arrived);
    for (;;) {
        WaitForSingleObject(c->command_set, INFINITE);
        if (c->command != CMD_RAISE && c->command != CMD_LET_GO)
            TlsSetValue(current_call_slot, c);
        switch (c->command) {
        case CMD_COMPLETE:
        case CMD_LET_GO:
            reply = c->command == CMD_COMPLETE ? c->argument : 0;
            c->status = (uint32_t)RpcAsyncCompleteCall(pAsync, &reply);
            TlsSetValue(current_call_slot, NULL);
            InterlockedExchange(&c->held, 0);
            InterlockedExchange(&c->gone, 1);
            SetEvent(c->done);
            return; /* under Wine the reply leaves when the manager routine returns */
        case CMD_ABORT:
            c->status = (uint32_t)RpcAsyncAbortCall(pAsync, (unsigned long)c->argument);
            TlsSetValue(current_call_slot, NULL);
            if (c->status == RPC_S_OK) {
                InterlockedExchange(&c->held, 0);
                InterlockedExchange(&c->gone, 1);
                SetEvent(c->done);
                return;
            }
            SetEvent(c->done); /* the abort failed: the call stays held */
            break;
        case CMD_RAISE:
            c->status = 0;
            InterlockedExchange(&c->held, 0);
            InterlockedExchange(&c->gone, 1);
            SetEvent(c->done);
            RpcRaiseException((RPC_STATUS)c->argument);
            return;
        case CMD_HAND_OFF:
            /* Return without ending the call: another thread ends it (server_later). */
            c->status = 0;
            TlsSetValue(current_call_slot, NULL);
            InterlockedExchange(&c->gone, 1);
            SetEvent(c->done);
            return;
        case CMD_TEST_CANCEL:
            /* NULL: the call this thread is processing. Wine 8.0 does not implement it. */
            fprintf(stderr, "callgate-wine-adapter: calling RpcServerTestCancel(NULL) in the "
                            "manager routine\n");
            c->status = (uint32_t)RpcServerTestCancel(NULL);
            TlsSetValue(current_call_slot, NULL);
            SetEvent(c->done);
            break;
        default:
            SetEvent(c->done);
            break;
        }
    }
}

static long __cdecl SyncProc_manager(handle_t h, long value)
{
    (void)h;
    sync_stamp = InterlockedIncrement(&dispatch_counter);
    return value;
}

static RPC_STATUS server_start(void)
{
    if (server_started)
        return RPC_S_OK;
    snprintf(endpoint, sizeof endpoint, "callgate-wine-%lu", (unsigned long)GetCurrentProcessId());
    snprintf(bad_endpoint, sizeof bad_endpoint, "callgate-wine-nobody-%lu",
             (unsigned long)GetCurrentProcessId());
    RPC_STATUS status = RpcServerUseProtseqEpA((RPC_CSTR) "ncalrpc", RPC_C_PROTSEQ_MAX_REQS_DEFAULT,
                                               (RPC_CSTR)endpoint, NULL);
    if (status == RPC_S_OK)
        status = RpcServerRegisterIf((RPC_IF_HANDLE)&server_interface, NULL, NULL);
    if (status == RPC_S_OK)
        status = RpcServerListen(1, RPC_C_LISTEN_MAX_CALLS_DEFAULT, TRUE);
    if (status == RPC_S_OK)
        server_started = 1;
    return status;
}

static RPC_STATUS bind_to(const char *ep, RPC_BINDING_HANDLE *binding)
{
    RPC_CSTR text = NULL;
    RPC_STATUS status = RpcStringBindingComposeA(NULL, (RPC_CSTR) "ncalrpc", NULL, (RPC_CSTR)ep,
                                                 NULL, &text);
    if (status != RPC_S_OK)
        return status;
    status = RpcBindingFromStringBindingA(text, binding);
    RpcStringFreeA(&text);
    return status;
}

/* ======================================================================================== */
/* Sessions, slots and results.                                                             */
/* ======================================================================================== */

enum machine { M_EVENT, M_CONTAINER, M_RPC, M_COM, M_COWAIT, M_THREAD_CANCEL, M_ORDER, M_NOTIF };
enum notify { N_NONE, N_EVENT, N_APC, N_CALLBACK };

struct client_call {         /* what the client holds for one asynchronous call */
    RPC_ASYNC_STATE async;   /* first member: the notification routines get &async */
    enum notify notify;
    HANDLE event;            /* Event notification: the event given to the runtime */
    HANDLE arrived;          /* Callback and APC: set by the routine */
    HANDLE thread;           /* APC: the thread the runtime queues the APC to */
    volatile LONG notes;     /* notifications seen by the routine */
    volatile LONG taken;     /* notifications reported to the harness */
    RPC_ASYNC_EVENT last_event;
    RPC_BINDING_HANDLE binding;
    int has_call;            /* AsyncCall succeeded on this handle */
    int owed;                /* a finished call's Callback or APC notification not yet seen */
    HANDLE completer;        /* a thread still blocked in RpcAsyncCompleteCall */
    uint32_t complete_status;
    struct guard complete_guard;
    LONG_PTR reply;
};

/* A slot's state; callgate_jsonl.h keeps the slots of each session, by name. */
struct slot {
    enum machine machine;
    ISynchronize *sync;          /* event */
    ISynchronizeContainer *container;
    struct client_call *client;  /* rpc_call: heap, never freed while a runtime thread may use it */
    struct server_call *server;  /* rpc_call: the call the test server holds, if any */
    int initialised;
    struct com_slot *com;        /* com_call (callgate_wine_com.c) */
    struct cowait_slot *cowait;  /* cowait (callgate_wine_cowait.c) */
    struct tc_slot *tc;          /* thread_cancel (callgate_wine_cancel.c) */
    struct order_slot *order;    /* rpc_order (callgate_wine_order.c) */
    struct notif_slot *notif;    /* rpc_notif (callgate_wine_order.c) */
};

static char message_buf[1024];

/* A string argument, or "" when it is missing. */
static const char *arg_str(const struct jsonl_request *q, const char *name)
{
    const char *s = jarg_str(q, name);
    return s ? s : "";
}

/* ======================================================================================== */
/* event and container                                                                      */
/* ======================================================================================== */

static DWORD timeout_ms(const struct jsonl_request *q)
{
    const char *t = arg_str(q, "timeout");
    if (strcmp(t, "zero") == 0)
        return 0;
    if (strcmp(t, "infinite") == 0)
        return INFINITE;
    return (DWORD)(q->wait_ms > 0 ? q->wait_ms : 50);
}

static struct result event_request(struct slot *s, const struct jsonl_request *q)
{
    const char *op = q->op;
    HRESULT hr;
    if (strcmp(op, "CoCreateInstance") == 0) {
        if (s->sync)
            return result_error("CoCreateInstance: the slot already holds an object");
        const char *clsid = arg_str(q, "clsid");
        const CLSID *which = strcmp(clsid, "StdEvent") == 0 ? &CLSID_StdEvent_
                             : strcmp(clsid, "ManualResetEvent") == 0 ? &CLSID_ManualResetEvent_
                             : NULL;
        if (!which)
            return result_error("CoCreateInstance: clsid must be ManualResetEvent or StdEvent");
        hr = CoCreateInstance(which, NULL, CLSCTX_INPROC_SERVER, &IID_ISynchronize,
                              (void **)&s->sync);
        if (FAILED(hr))
            s->sync = NULL;
        return result_code((uint32_t)hr);
    }
    if (!s->sync)
        return result_error("the event has not been created (CoCreateInstance failed or was not "
                            "sent)");
    if (strcmp(op, "Signal") == 0)
        return result_code((uint32_t)ISynchronize_Signal(s->sync));
    if (strcmp(op, "Reset") == 0)
        return result_code((uint32_t)ISynchronize_Reset(s->sync));
    if (strcmp(op, "Wait") == 0)
        return result_code((uint32_t)ISynchronize_Wait(s->sync, 0, timeout_ms(q)));
    if (strcmp(op, "GetHandle") == 0) {
        ISynchronizeHandle *sh = NULL;
        HANDLE handle = NULL;
        hr = ISynchronize_QueryInterface(s->sync, &IID_ISynchronizeHandle, (void **)&sh);
        if (FAILED(hr))
            return result_code((uint32_t)hr);
        hr = ISynchronizeHandle_GetHandle(sh, &handle);
        ISynchronizeHandle_Release(sh);
        struct result r = result_code((uint32_t)hr);
        if (SUCCEEDED(hr))
            output_bool(&r, "nonnull", handle != NULL);
        return r;
    }
    if (strcmp(op, "SetEventHandle") == 0) {
        ISynchronizeEvent *se = NULL;
        hr = ISynchronize_QueryInterface(s->sync, &IID_ISynchronizeEvent, (void **)&se);
        if (FAILED(hr))
            return result_code((uint32_t)hr); /* Wine 8.0: E_NOINTERFACE */
        HANDLE fresh = CreateEventW(NULL, TRUE, FALSE, NULL);
        hr = ISynchronizeEvent_SetEventHandle(se, &fresh);
        ISynchronizeEvent_Release(se);
        return result_code((uint32_t)hr);
    }
    return result_error("the event machine has no such operation in this adapter");
}

static struct result container_request(struct slot *s, const char *op)
{
    if (strcmp(op, "CoCreateInstance") == 0) {
        if (s->container)
            return result_error("CoCreateInstance: the slot already holds a container");
        HRESULT hr = CoCreateInstance(&CLSID_SynchronizeContainer_, NULL, CLSCTX_INPROC_SERVER,
                                      &IID_ISynchronizeContainer, (void **)&s->container);
        if (FAILED(hr))
            s->container = NULL;
        return result_code((uint32_t)hr);
    }
    if (!s->container)
        return result_error("the container has not been created (CoCreateInstance failed or was "
                            "not sent)");
    /* Wine 8.0 has no CLSID_SynchronizeContainer, so nothing beyond creation is reached. */
    return result_not_applicable("this adapter drives ISynchronizeContainer only as far as "
                                 "CoCreateInstance; the runtime it was written against has "
                                 "none");
}

/* ======================================================================================== */
/* rpc_call: the client side                                                                */
/* ======================================================================================== */

static void RPC_ENTRY notification_routine(PRPC_ASYNC_STATE pAsync, void *context,
                                           RPC_ASYNC_EVENT event)
{
    (void)context;
    struct client_call *c = (struct client_call *)pAsync; /* async is the first member */
    c->last_event = event;
    InterlockedIncrement(&c->notes);
    SetEvent(c->arrived);
}

static struct client_call *client_new(void)
{
    struct client_call *c = calloc(1, sizeof *c);
    if (c)
        c->arrived = CreateEventW(NULL, FALSE, FALSE, NULL);
    return c;
}

/* Before the handle is initialised again or carries a new call: a notification the runtime owes
 * for the call that finished on it belongs to that call, not to the next. Wine queues the APC of
 * a completed call when the reply arrives, and it runs at this thread's next alertable wait, which
 * may come after the client's RpcAsyncCompleteCall has returned; a Callback may likewise still be
 * on its way. So wait (up to SETTLE_MS) for the finished call's notification, run the APCs queued
 * to this thread, and count from zero again. */
static void forget_earlier_notifications(struct client_call *c)
{
    if (c->owed && c->notes == 0) {
        DWORD start = GetTickCount();
        while (c->notes == 0 && GetTickCount() - start < SETTLE_MS) {
            if (c->notify == N_APC)
                SleepEx(SETTLE_MS - (GetTickCount() - start), TRUE);
            else
                WaitForSingleObject(c->arrived, SETTLE_MS - (GetTickCount() - start));
        }
        if (c->notes == 0)
            fprintf(stderr, "callgate-wine-adapter: the finished call's notification did not "
                            "arrive within %d ms\n", SETTLE_MS);
    }
    SleepEx(0, TRUE); /* APCs of earlier calls queued to this thread run now, and are forgotten */
    c->owed = 0;
    c->notes = c->taken = 0;
    ResetEvent(c->arrived);
}

static struct result rpc_initialize(struct slot *s, const struct jsonl_request *q)
{
    const char *size = arg_str(q, "size");
    if (!s->client && !(s->client = client_new()))
        return result_error("out of memory");
    forget_earlier_notifications(s->client);
    RPC_ASYNC_STATE *a = &s->client->async;
    void *user = (void *)(ULONG_PTR)0x5eed;  /* the application's own value: must be kept */
    a->UserInfo = user;
    unsigned int bytes = sizeof(RPC_ASYNC_STATE);
    if (strcmp(size, "smaller") == 0)
        bytes -= 1;
    else if (strcmp(size, "larger") == 0)
        bytes += 1;
    RPC_STATUS status = RpcAsyncInitializeHandle(a, bytes);
    struct result r = result_code((uint32_t)status);
    if (status != RPC_S_OK)
        return r;
    s->initialised = 1;
    s->client->has_call = 0;
    output_int(&r, "Signature", (long long)a->Signature);
    if (a->Size == sizeof(RPC_ASYNC_STATE))
        output_text(&r, "Size", "sizeof(RPC_ASYNC_STATE)");
    else
        output_int(&r, "Size", (long long)a->Size);
    output_int(&r, "Lock", a->Lock);
    output_int(&r, "Flags", (long long)a->Flags);
    output_int(&r, "StubInfo", a->StubInfo != NULL);
    output_int(&r, "RuntimeInfo", a->RuntimeInfo != NULL);
    long long reserved = 0;
    for (int i = 0; i < 4 && !reserved; i++)
        reserved = a->Reserved[i];
    output_int(&r, "Reserved", reserved);
    output_bool(&r, "UserInfo_kept", a->UserInfo == user);
    return r;
}

static void client_close_resources(struct client_call *c)
{
    if (c->event) {
        CloseHandle(c->event);
        c->event = NULL;
    }
    if (c->thread) {
        CloseHandle(c->thread);
        c->thread = NULL;
    }
}

static HANDLE apc_thread(struct client_call *c, const char *form); /* callgate_wine_forms.c */

static struct result rpc_async_call(struct slot *s, const struct jsonl_request *q)
{
    struct client_call *c = s->client;
    const char *notify = arg_str(q, "notify"), *binding = arg_str(q, "binding");
    if (!c)
        return result_error("AsyncCall: the handle was never initialised");
    if (c->completer)
        return result_error("AsyncCall: a previous RpcAsyncCompleteCall on this handle has not "
                            "returned");
    RPC_STATUS status = server_start();
    if (status != RPC_S_OK) {
        snprintf(message_buf, sizeof message_buf, "AsyncCall: the in-process RPC server did not "
                 "start over ncalrpc (status %lu)", (unsigned long)status);
        return result_error(message_buf);
    }
    client_close_resources(c);
    if (c->binding)
        RpcBindingFree(&c->binding);
    status = bind_to(strcmp(binding, "bad") == 0 ? bad_endpoint : endpoint, &c->binding);
    if (status != RPC_S_OK)
        return result_code((uint32_t)status);
    RPC_ASYNC_STATE *a = &c->async;
    forget_earlier_notifications(c);
    if (strcmp(notify, "None") == 0) {
        c->notify = N_NONE;
        a->NotificationType = RpcNotificationTypeNone;
    } else if (strcmp(notify, "Event") == 0) {
        c->notify = N_EVENT;
        a->NotificationType = RpcNotificationTypeEvent;
        c->event = CreateEventW(NULL, FALSE, FALSE, NULL);
        a->u.hEvent = c->event;
    } else if (strcmp(notify, "Apc") == 0) {
        c->notify = N_APC;
        a->NotificationType = RpcNotificationTypeApc;
        a->u.APC.NotificationRoutine = notification_routine;
        a->u.APC.hThread = apc_thread(c, arg_str(q, "hThread"));
    } else if (strcmp(arg_str(q, "hThread"), "NULL") == 0) {
        return result_error("AsyncCall: hThread NULL is a form of NotificationType Apc only");
    } else if (strcmp(notify, "Callback") == 0) {
        c->notify = N_CALLBACK;
        a->NotificationType = RpcNotificationTypeCallback;
        a->u.NotificationRoutine = notification_routine;
    } else {
        return result_not_applicable("this adapter offers notification by None, Event, Apc and "
                                     "Callback");
    }
    struct server_call *call = call_new();
    if (!call)
        return result_error("out of memory");
    long result = TestProc_async(a, c->binding, call->id);
    if (result != 0) /* the stub raised: no call, nothing to complete */
        return result_code((uint32_t)result);
    c->has_call = 1;
    s->server = call;
    return result_code(RPC_S_OK);
}

static void complete_now(void *arg)
{
    struct client_call *c = arg;
    c->complete_status = (uint32_t)RpcAsyncCompleteCall(&c->async, &c->reply);
}

static DWORD WINAPI completer_main(void *arg)
{
    struct client_call *c = arg;
    DWORD code = 0;
    c->reply = 0;
    c->complete_guard.exception = 0;
    TlsSetValue(guard_slot, &c->complete_guard);
    if (guarded_call(complete_now, c, &code)) /* an RPC status escaped: the crash watch let it by */
        c->complete_guard.exception = (LONG)code;
    TlsSetValue(guard_slot, NULL);
    return 0;
}

/* The observation for a call that raised an exception instead of returning: the exception code,
 * with the output `raised`. */
static struct result raised(DWORD exception)
{
    struct result r = result_code((uint32_t)exception);
    output_bool(&r, "raised", 1);
    return r;
}

static struct result rpc_complete(struct slot *s, long long wait_ms)
{
    struct client_call *c = s->client;
    if (!c)
        return result_error("RpcAsyncCompleteCall: the handle was never initialised");
    if (c->completer) {
        if (WaitForSingleObject(c->completer, 0) != WAIT_OBJECT_0)
            return result_error("RpcAsyncCompleteCall: an earlier RpcAsyncCompleteCall on this "
                                "handle is still blocked");
        CloseHandle(c->completer); /* it returned late; this is a new call */
        c->completer = NULL;
    }
    if (!c->has_call)
        fprintf(stderr, "callgate-wine-adapter: calling RpcAsyncCompleteCall on a handle that "
                        "carries no call\n");
    c->completer = CreateThread(NULL, 0, completer_main, c, 0, NULL);
    if (!c->completer)
        return result_error("RpcAsyncCompleteCall: cannot start a thread to call it on");
    DWORD limit = (DWORD)(wait_ms > 0 ? wait_ms : 0) + COMPLETE_GRACE_MS;
    if (WaitForSingleObject(c->completer, limit) != WAIT_OBJECT_0) {
        /* Still blocked: leave the thread (it ends when the call does, at session close) and
         * report what the adapter saw: its wait for the call to return timed out. */
        fprintf(stderr, "callgate-wine-adapter: RpcAsyncCompleteCall did not return within %lu "
                        "ms; reported as WAIT_TIMEOUT (258) with returned=false\n",
                (unsigned long)limit);
        struct result r = result_code(WAIT_TIMEOUT);
        output_bool(&r, "returned", 0);
        output_int(&r, "waited_ms", (long long)limit);
        return r;
    }
    CloseHandle(c->completer);
    c->completer = NULL;
    if (c->complete_guard.exception) {
        c->has_call = 0;
        return raised((DWORD)c->complete_guard.exception);
    }
    uint32_t status = c->complete_status;
    struct result r = result_code(status);
    if (!c->has_call || status == 997)
        return r;
    int open = 1;
    DWORD flags;
    if (c->event && !GetHandleInformation(c->event, &flags))
        open = 0;
    if (c->thread && !GetHandleInformation(c->thread, &flags))
        open = 0;
    output_bool(&r, "resources_open", open);
    if (status == RPC_S_OK)
        output_int(&r, "reply", (uint32_t)c->reply); /* an unsigned 32-bit value */
    client_close_resources(c); /* final: the client closes what it supplied */
    c->has_call = 0;
    c->owed = c->notify == N_APC || c->notify == N_CALLBACK;
    return r;
}

static struct result rpc_wait_notification(struct slot *s, long long wait_ms)
{
    struct client_call *c = s->client;
    DWORD ms = (DWORD)(wait_ms > 0 ? wait_ms : 50);
    if (!c)
        return result_count(0);
    switch (c->notify) {
    case N_EVENT:
        if (!c->event || WaitForSingleObject(c->event, ms) != WAIT_OBJECT_0)
            return result_count(0);
        c->taken++;
        break;
    case N_CALLBACK:
        if (c->notes <= c->taken && WaitForSingleObject(c->arrived, ms) != WAIT_OBJECT_0)
            return result_count(0);
        if (c->notes <= c->taken)
            return result_count(0);
        c->taken = c->notes;
        break;
    case N_APC: {
        /* APCs run only while their thread waits alertably: this is that thread. */
        DWORD start = GetTickCount();
        while (c->notes <= c->taken && GetTickCount() - start < ms)
            SleepEx(ms - (GetTickCount() - start), TRUE);
        if (c->notes <= c->taken)
            return result_count(0);
        c->taken = c->notes;
        break;
    }
    default:
        return result_count(0); /* None: nothing is delivered; the client polls */
    }
    struct result r = result_count(1);
    output_int(&r, "Event", c->notify == N_EVENT ? RpcCallComplete : c->last_event);
    return r;
}

static struct result rpc_invalid_handle(const struct jsonl_request *q)
{
    static RPC_ASYNC_STATE zeroed; /* a handle nobody initialised */
    LONG_PTR reply = 0;
    const char *api = arg_str(q, "api");
    memset(&zeroed, 0, sizeof zeroed);
    if (strcmp(api, "RpcAsyncGetCallStatus") == 0)
        return result_code((uint32_t)RpcAsyncGetCallStatus(&zeroed));
    if (strcmp(api, "RpcAsyncCompleteCall") == 0)
        return result_code((uint32_t)RpcAsyncCompleteCall(&zeroed, &reply));
    if (strcmp(api, "RpcAsyncCancelCall") == 0)
        return result_code((uint32_t)RpcAsyncCancelCall(&zeroed, TRUE));
    if (strcmp(api, "RpcAsyncAbortCall") == 0)
        return result_code((uint32_t)RpcAsyncAbortCall(&zeroed, ERROR_ACCESS_DENIED));
    return result_error("invalid_handle: api must name one of the four functions");
}

/* A server_* command, carried out by the manager routine; answered when it has happened. */
static struct result server_command(struct slot *s, enum command command, long argument)
{
    struct server_call *c = s->server;
    if (!c || c->gone)
        return result_error("the test server holds no call for this handle");
    if (WaitForSingleObject(c->arrived, ARRIVAL_MS) != WAIT_OBJECT_0) {
        snprintf(message_buf, sizeof message_buf, "the asynchronous call did not reach the "
                 "manager routine within %d ms", ARRIVAL_MS);
        return result_error(message_buf);
    }
    c->command = command;
    c->argument = argument;
    SetEvent(c->command_set);
    if (WaitForSingleObject(c->done, COMMAND_MS) != WAIT_OBJECT_0) {
        snprintf(message_buf, sizeof message_buf, "the manager routine did not carry out the "
                 "command within %d ms", COMMAND_MS);
        return result_error(message_buf);
    }
    if (c->exception) {
        /* The runtime raised instead of returning (0x80000100: Wine's unimplemented function);
         * the RPC runtime caught it and faulted the call, so the server handle is gone. */
        fprintf(stderr, "callgate-wine-adapter: the runtime raised exception 0x%08lX in the "
                        "manager routine\n", (unsigned long)(ULONG)c->exception);
        return raised((DWORD)c->exception);
    }
    return result_code(c->status);
}

#include "callgate_wine_forms.c"

struct idle_test {
    RPC_STATUS status;
    struct guard guard;
};

static void test_cancel_now(void *arg)
{
    struct idle_test *t = arg;
    t->status = RpcServerTestCancel(NULL); /* a thread that processes no call */
}

static DWORD WINAPI idle_test_cancel(void *arg)
{
    struct idle_test *t = arg;
    DWORD code = 0;
    TlsSetValue(guard_slot, &t->guard);
    if (guarded_call(test_cancel_now, t, &code))
        t->guard.exception = (LONG)code;
    TlsSetValue(guard_slot, NULL);
    return 0;
}

static struct result rpc_request(struct slot *s, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (strcmp(op, "RpcAsyncInitializeHandle") == 0)
        return rpc_initialize(s, q);
    if (strcmp(op, "AsyncCall") == 0)
        return rpc_async_call(s, q);
    if (strcmp(op, "RpcAsyncGetCallStatus") == 0)
        return s->client ? result_code((uint32_t)RpcAsyncGetCallStatus(&s->client->async))
                         : result_error("the handle was never initialised");
    if (strcmp(op, "RpcAsyncCompleteCall") == 0)
        return rpc_complete(s, q->wait_ms);
    if (strcmp(op, "RpcAsyncCancelCall") == 0)
        return s->client ? result_code((uint32_t)RpcAsyncCancelCall(&s->client->async,
                                                             jarg_bool(q, "abort", 0)))
                         : result_error("the handle was never initialised");
    if (strcmp(op, "wait_notification") == 0)
        return rpc_wait_notification(s, q->wait_ms);
    if (strcmp(op, "invalid_handle") == 0)
        return rpc_invalid_handle(q);
    if (strcmp(op, "sync_call") == 0) {
        RPC_BINDING_HANDLE b = NULL;
        RPC_STATUS status = server_start();
        if (status == RPC_S_OK)
            status = bind_to(endpoint, &b);
        if (status != RPC_S_OK)
            return result_code((uint32_t)status);
        long reply = SyncProc(b, (long)jarg_int(q, "reply", 1));
        RpcBindingFree(&b);
        struct result r = result_code(RPC_S_OK);
        output_int(&r, "reply", (uint32_t)reply); /* an unsigned 32-bit value */
        return r;
    }
    if (strcmp(op, "server_complete") == 0)
        return later_thread(q) ? server_later(s, CMD_COMPLETE, (long)jarg_int(q, "reply", 1))
                               : server_command(s, CMD_COMPLETE, (long)jarg_int(q, "reply", 1));
    if (strcmp(op, "server_abort") == 0)
        return later_thread(q) ? server_later(s, CMD_ABORT, (long)jarg_int(q, "code", 5))
                               : server_command(s, CMD_ABORT, (long)jarg_int(q, "code", 5));
    if (strcmp(op, "server_raise") == 0)
        return later_thread(q) ? result_error("server_raise: a raise after the hand-off is "
                                              "undefined (RPC-SRV-EXC-02); never sent")
                               : server_command(s, CMD_RAISE, (long)jarg_int(q, "code", 5));
    if (strcmp(op, "server_test_cancel") == 0)
        return server_command(s, CMD_TEST_CANCEL, 0);
    if (strcmp(op, "server_test_cancel_idle") == 0) {
        static struct idle_test test;
        memset(&test, 0, sizeof test);
        fprintf(stderr, "callgate-wine-adapter: calling RpcServerTestCancel(NULL) on a thread "
                        "that processes no call\n");
        HANDLE t = CreateThread(NULL, 0, idle_test_cancel, &test, 0, NULL);
        if (!t)
            return result_error("cannot start a thread");
        if (WaitForSingleObject(t, COMMAND_MS) != WAIT_OBJECT_0)
            return result_error("RpcServerTestCancel(NULL) on an idle thread did not return");
        CloseHandle(t);
        if (test.guard.exception)
            return raised((DWORD)test.guard.exception);
        return result_code((uint32_t)test.status);
    }
    if (strcmp(op, "server_handle_live") == 0) {
        /* A call just made may not have reached the manager routine yet: wait until it has. */
        if (s->server && !s->server->gone)
            WaitForSingleObject(s->server->arrived, ARRIVAL_MS);
        int live = s->server && s->server->held;
        return result_count(live ? 1 : 0);
    }
    if (strcmp(op, "adapter_check_raise") == 0) {
        /* Not a model operation (callgate never sends it): the adapter's own check that an RPC
         * exception escaping an API call on the request thread is answered as `raised` and the
         * process lives (tests/test_wine.py). RpcRaiseException does not return. */
        RpcRaiseException((RPC_STATUS)jarg_int(q, "code", RPC_X_BAD_STUB_DATA));
        return result_error("RpcRaiseException returned");
    }
    return result_error("the rpc_call machine has no such operation in this adapter");
}

/* COM call objects: the test server and its com_call slots (a file of its own). */
#include "callgate_wine_com.c"
#include "callgate_wine_cowait.c" /* cowait: CoWaitForMultipleHandles (section 2.11) */
#include "callgate_wine_cancel.c" /* thread_cancel: thread-level cancellation (section 2.8) */
#include "callgate_wine_order.c" /* rpc_order, rpc_notif: sections 2.17 and 2.18 */
#include "callgate_wine_pipe.c" /* rpc_pipe: a probe of section 2.19, no driver */
#include "callgate_wine_absent.c" /* the requests declined, declared in the handshake */

/* ======================================================================================== */
/* Slots: what callgate_jsonl.h calls for each slot an open names, each request, each close. */
/* ======================================================================================== */

/* Make a slot for the open message: event, container, rpc_call, com_call, cowait or
 * thread_cancel. */
static struct result open_slot(const char *machine, const struct jdoc *d, int config, void **slot)
{
    enum machine m;
    if (strcmp(machine, "event") == 0)
        m = M_EVENT;
    else if (strcmp(machine, "container") == 0)
        m = M_CONTAINER;
    else if (strcmp(machine, "rpc_call") == 0)
        m = M_RPC;
    else if (strcmp(machine, "com_call") == 0)
        m = M_COM;
    else if (strcmp(machine, "cowait") == 0)
        m = M_COWAIT;
    else if (strcmp(machine, "thread_cancel") == 0)
        m = M_THREAD_CANCEL;
    else if (strcmp(machine, "rpc_order") == 0)
        m = M_ORDER;
    else if (strcmp(machine, "rpc_notif") == 0)
        m = M_NOTIF;
    else
        return result_not_applicable("this adapter has no such machine");
    struct slot *s = calloc(1, sizeof *s);
    if (!s)
        return result_error("out of memory");
    s->machine = m;
    if (m == M_COM) {
        struct result r = com_open(jget_bool(d, config, "factory", 1), &s->com);
        if (r.status != RESULT_OK) {
            free(s);
            return r;
        }
    }
    if (m == M_COWAIT || m == M_THREAD_CANCEL) {
        struct result r = m == M_COWAIT ? cowait_open(&s->cowait) : tc_open(&s->tc);
        if (r.status != RESULT_OK) {
            free(s);
            return r;
        }
    }
    if (m == M_ORDER) {
        struct result r = order_open(&s->order);
        if (r.status != RESULT_OK) {
            free(s);
            return r;
        }
    }
    if (m == M_NOTIF && !(s->notif = calloc(1, sizeof *s->notif))) {
        free(s);
        return result_error("out of memory");
    }
    *slot = s;
    return result_ok();
}

struct request_call {
    struct slot *slot;
    const struct jsonl_request *q;
    struct result result;
};

static void request_now(void *arg)
{
    struct request_call *call = arg;
    struct slot *s = call->slot;
    if (s->machine == M_EVENT)
        call->result = event_request(s, call->q);
    else if (s->machine == M_CONTAINER)
        call->result = container_request(s, call->q->op);
    else if (s->machine == M_COM)
        call->result = com_request(s->com, call->q);
    else if (s->machine == M_COWAIT)
        call->result = cowait_request(s->cowait, call->q);
    else if (s->machine == M_THREAD_CANCEL)
        call->result = tc_request(s->tc, call->q);
    else if (s->machine == M_ORDER)
        call->result = order_request(s->order, call->q);
    else if (s->machine == M_NOTIF)
        call->result = notif_request(s->notif, call->q);
    else
        call->result = rpc_request(s, call->q);
}

/* Every request runs inside guarded_call: an exception that escapes any API call it makes on
 * this thread (an RPC status raised with RpcRaiseException as much as an access violation) is
 * the request's outcome, the exception code with `raised: true`, and the process goes on. */
static struct result perform(void *slot, const struct jsonl_request *q)
{
    struct request_call call = {slot, q, {0}};
    DWORD code = 0;
    if (guarded_call(request_now, &call, &code)) {
        fprintf(stderr, "callgate-wine-adapter: exception 0x%08lX escaped an API call of %s; "
                        "reported as raised\n", (unsigned long)code, q->op);
        return raised(code);
    }
    return call.result;
}

static void close_slot(void *slot)
{
    struct slot *s = slot;
    if (s->com)
        com_close(s->com);
    if (s->cowait)
        cowait_close(s->cowait);
    if (s->tc)
        tc_close(s->tc);
    if (s->order)
        order_close(s->order);
    if (s->notif)
        notif_close(s->notif);
    if (s->server && !s->server->gone && s->server->held) {
        s->server->command = CMD_LET_GO; /* let the held call go */
        SetEvent(s->server->command_set);
        WaitForSingleObject(s->server->done, 1000);
    }
    if (s->client && s->client->completer)
        WaitForSingleObject(s->client->completer, 1000);
    if (s->sync)
        ISynchronize_Release(s->sync);
    if (s->container)
        ISynchronizeContainer_Release(s->container);
    /* client_call and server_call stay allocated: runtime threads may still touch them */
    free(s);
}

static void write_handshake(void)
{
    static struct jout o;
    char version[64] = "unknown";
    typedef const char *(CDECL *wine_get_version_fn)(void);
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    wine_get_version_fn wine_get_version =
        ntdll ? (wine_get_version_fn)(void (*)(void))GetProcAddress(ntdll, "wine_get_version")
              : NULL;
    if (wine_get_version)
        snprintf(version, sizeof version, "%s", wine_get_version());
    jout_reset(&o);
    jout_raw(&o, "{\"type\":\"handshake\",\"protocol\":");
    jout_int(&o, JSONL_PROTOCOL);
    jout_raw(&o, ",\"implementation\":");
    jout_str(&o, wine_get_version ? "wine" : "windows");
    jout_raw(&o, ",\"version\":");
    jout_str(&o, version);
    /* What this adapter drives. Ioc and Hwnd notification, and COM call objects, are left out. */
    jout_raw(&o, ",\"features\":[\"sync.event\",\"sync.manual_reset_event\",\"sync.std_event\","
                "\"sync.handle\",\"sync.set_event_handle\",\"sync.container\","
                "\"rpc.handle\",\"rpc.call\",\"rpc.cancel\",\"rpc.abort\",\"rpc.raise\","
                "\"rpc.server_test_cancel\",\"rpc.observe_server_handle\","
                "\"rpc.notify.None\",\"rpc.notify.Event\",\"rpc.notify.Apc\","
                "\"rpc.notify.Callback\",\"rpc.apc_null_thread\",\"rpc.server_later\","
                "\"com.call\",\"com.object_without_factory\","
                "\"com.cowait\",\"com.thread_cancel\",\"com.thread_cancel.object\","
                "\"rpc.order\",\"rpc.register_info\",\"rpc.notif\"]");
    /* Only the choices observed: CLSID_ManualResetEvent starts non-signalled and its timed-out
     * Wait returns RPC_S_CALLPENDING; an initialised handle without a call reports
     * RPC_S_INVALID_ASYNC_HANDLE; a call on a binding to an endpoint no server listens on fails
     * in the stub at once (RPC_S_SERVER_UNAVAILABLE, 1722), not through its completion. */
    jout_raw(&o, ",\"pins\":{\"event_wait_timeout_code\":\"RPC_S_CALLPENDING\","
                "\"new_event_state\":\"nonsignaled\","
                "\"unused_handle_status\":\"RPC_S_INVALID_ASYNC_HANDLE\","
                "\"bad_binding_failure\":\"synchronous\","
                "\"cowait_null_handles_code\":\"E_INVALIDARG\","
                "\"disable_nested_code\":\"S_OK\",");
    /* The com_call configuration (callgate_wine_com.c). In-process, Wait is Wine's
     * ManualResetEvent's (RPC_S_CALLPENDING on timeout, it stays signalled) and Begin_ with a
     * call in flight is the test server's RPC_S_CALLPENDING. */
    if (com_mode == COM_INPROC)
        jout_raw(&o, "\"call_object_origin\":\"same_apartment\","
                    "\"call_wait_timeout_code\":\"RPC_S_CALLPENDING\","
                    "\"call_object_event\":\"ManualResetEvent\","
                    "\"begin_pending_code\":\"RPC_S_CALLPENDING\"}");
    else
        jout_raw(&o, "\"call_object_origin\":\"standard_marshaling\"}");
    /* One request at a time (jsonl_serve's loop on the main thread). */
    jout_raw(&o, ",\"concurrent\":false");
    /* Section 2.19: not declared, and why (callgate_wine_pipe.c). */
    static char pipe_reason[1200];
    pipe_absent_reason(pipe_reason, sizeof pipe_reason, wine_get_version != NULL);
    jout_raw(&o, ",\"absent\":{\"rpc.pipe\":");
    jout_str(&o, pipe_reason);
    write_absent_requests(&o);
    jout_raw(&o, "}");
    jout_raw(&o, ",\"notes\":");
    jout_str(&o, com_notes);
    jout_raw(&o, "}");
    jout_line(&o);
}

int main(int argc, char **argv)
{
    _setmode(_fileno(stdout), _O_BINARY); /* lines end in \n, not \r\n, from --probe too */
    _setmode(_fileno(stdin), _O_BINARY);
    InitializeCriticalSection(&calls_lock);
    HRESULT hr = CoInitializeEx(NULL, COINIT_MULTITHREADED);
    if (FAILED(hr)) {
        fprintf(stderr, "callgate-wine-adapter: CoInitializeEx failed with 0x%08lX\n",
                (unsigned long)hr);
        return 2;
    }
    current_call_slot = TlsAlloc();
    guard_slot = TlsAlloc();
    AddVectoredExceptionHandler(1, exception_watch);
    SetUnhandledExceptionFilter(last_chance);
    int probe = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--com=inproc") == 0)
            com_mode = COM_INPROC;
        else if (strcmp(argv[i], "--com=marshaled") == 0)
            com_mode = COM_MARSHALED;
        else if (strcmp(argv[i], "--probe") == 0)
            probe = 1;
        else {
            fprintf(stderr, "callgate-wine-adapter: unknown option %s (use --com=marshaled, "
                            "--com=inproc, --probe)\n", argv[i]);
            return 2;
        }
    }
    com_setup();
    if (probe) {
        printf("%s\n", com_notes);
        return 0;
    }
    static const struct jsonl_adapter adapter = {
        .handshake = write_handshake,
        .open_slot = open_slot,
        .request = perform,
        .close_slot = close_slot,
        .code_name = code_name,
    };
    jsonl_serve(&adapter);
    fflush(stdout);
    /* Held calls and blocked threads may remain: end the process without waiting for them. */
    ExitProcess(0);
}
