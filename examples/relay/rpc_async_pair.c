/*
 * rpc_async_pair.c: an ordinary asynchronous RPC client/server pair over ncalrpc, for callgate's
 * monitor mode (docs/traces.md). It knows nothing of callgate: it makes a few asynchronous calls
 * and its server answers them, and `callgate import-relay` turns the Wine relay log of a run
 * (WINEDEBUG=+relay,+pid,+tid) into a trace that `callgate check-trace` judges.
 *
 *   rpc_async_pair.exe server ENDPOINT   listens on ncalrpc:ENDPOINT until a client says stop
 *   rpc_async_pair.exe client ENDPOINT   makes the calls below, then tells the server to stop
 *
 * The server sample of "Sending the Asynchronous Reply" (Microsoft's RPC documentation), made to
 * compile: the manager routine of an [async] procedure finishes its call with RpcAsyncCompleteCall
 * or gives it up with RpcAsyncAbortCall. No available widl generates stubs for [async]
 * procedures, so the stubs are written out by hand as MIDL writes them for x64 (Oicf), as in
 * adapters/wine/callgate_wine_adapter.c. The client's calls, one after the other, each with its
 * own RPC_ASYNC_STATE and Event notification:
 *
 *   1 complete  the server completes in its routine; the client polls RpcAsyncGetCallStatus,
 *               waits for the event and takes the reply with RpcAsyncCompleteCall;
 *   2 cancel    the server holds the call; the client asks RpcAsyncCancelCall(FALSE) for it and
 *               then completes it as usual once the server replied;
 *   3 abort     the server tries RpcAsyncAbortCall(pAsync, 5) and, if the runtime refuses,
 *               completes the call instead;
 *   4 slow      the server holds the call while the client polls the status a few times.
 *
 * Both sides write one line per call with OutputDebugStringA, "callgate-tie call=N side=S
 * async=P": the program's own tag, which ties the server's RPC_ASYNC_STATE of a call to the
 * client's (the relay log shows the string). Without it the importer cannot tell which client
 * call a server's RpcAsyncCompleteCall finished, and the server's calls are left unclaimed.
 */

#include <windows.h>
#include <rpc.h>
#include <rpcasync.h>
#include <rpcndr.h>
#include <stdio.h>
#include <stdlib.h>

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


static const char *the_endpoint;

static void tie(long call, const char *side, const void *async)
{
    char text[128];
    snprintf(text, sizeof text, "callgate-tie call=%ld side=%s async=%p", call, side, async);
    OutputDebugStringA(text);
}

/* The manager routine: the call number's low digit says what to do with it. */
static void __cdecl TestProc_manager(PRPC_ASYNC_STATE pAsync, handle_t h, long call)
{
    long reply = call;
    (void)h;
    tie(call, "server", pAsync);
    switch (call % 10) {
    case 2: /* cancel: hold the call while the client asks to cancel it */
        Sleep(600);
        break;
    case 3: /* abort; if the runtime refuses, complete instead */
        if (RpcAsyncAbortCall(pAsync, 5) == RPC_S_OK)
            return;
        break;
    case 4: /* slow: hold the call while the client polls */
        Sleep(400);
        break;
    default:
        break;
    }
    RPC_STATUS status = RpcAsyncCompleteCall(pAsync, &reply);
    fprintf(stderr, "server: call %ld completed with %ld\n", call, (long)status);
}

static long __cdecl SyncProc_manager(handle_t h, long value)
{
    (void)h;
    if (value == -1)
        RpcMgmtStopServerListening(NULL);
    return value;
}

static int serve(void)
{
    RPC_STATUS status = RpcServerUseProtseqEpA((RPC_CSTR)"ncalrpc", RPC_C_PROTSEQ_MAX_REQS_DEFAULT,
                                               (RPC_CSTR)the_endpoint, NULL);
    if (status == RPC_S_OK)
        status = RpcServerRegisterIf((RPC_IF_HANDLE)&server_interface, NULL, NULL);
    if (status != RPC_S_OK) {
        fprintf(stderr, "server: cannot listen on %s: %ld\n", the_endpoint, (long)status);
        return 1;
    }
    fprintf(stderr, "server: listening\n");
    printf("listening\n");
    fflush(stdout);
    status = RpcServerListen(1, RPC_C_LISTEN_MAX_CALLS_DEFAULT, FALSE); /* until stopped */
    fprintf(stderr, "server: stopped (%ld)\n", (long)status);
    return 0;
}

static int one_call(handle_t binding, long call, int cancel, int polls)
{
    RPC_ASYNC_STATE async;
    RPC_STATUS status = RpcAsyncInitializeHandle(&async, sizeof async);
    if (status != RPC_S_OK)
        return fprintf(stderr, "client: RpcAsyncInitializeHandle = %ld\n", (long)status), 1;
    async.UserInfo = NULL;
    async.NotificationType = RpcNotificationTypeEvent;
    async.u.hEvent = CreateEventW(NULL, FALSE, FALSE, NULL);
    tie(call, "client", &async);
    long issued = TestProc_async(&async, binding, call);
    if (issued != 0) {
        fprintf(stderr, "client: call %ld not issued: %ld\n", call, issued);
        CloseHandle(async.u.hEvent);
        return 1;
    }
    for (int i = 0; i < polls; i++) {
        status = RpcAsyncGetCallStatus(&async);
        fprintf(stderr, "client: call %ld status %ld\n", call, (long)status);
        Sleep(50);
    }
    if (cancel) {
        status = RpcAsyncCancelCall(&async, FALSE);
        fprintf(stderr, "client: call %ld cancel %ld\n", call, (long)status);
    }
    DWORD waited = WaitForSingleObject(async.u.hEvent, 10000);
    long reply = 0;
    status = RpcAsyncCompleteCall(&async, &reply);
    fprintf(stderr, "client: call %ld waited %lu, completed %ld, reply %ld\n", call,
            (unsigned long)waited, (long)status, reply);
    CloseHandle(async.u.hEvent);
    return 0;
}

static int client(void)
{
    RPC_CSTR text = NULL;
    handle_t binding = NULL;
    RPC_STATUS status = RpcStringBindingComposeA(NULL, (RPC_CSTR)"ncalrpc", NULL,
                                                 (RPC_CSTR)the_endpoint, NULL, &text);
    if (status == RPC_S_OK)
        status = RpcBindingFromStringBindingA(text, &binding);
    if (status != RPC_S_OK)
        return fprintf(stderr, "client: no binding: %ld\n", (long)status), 1;
    int failed = 0;
    failed |= one_call(binding, 11, 0, 1); /* complete */
    failed |= one_call(binding, 22, 1, 0); /* cancel */
    failed |= one_call(binding, 33, 0, 0); /* abort */
    failed |= one_call(binding, 44, 0, 3); /* slow, polled */
    SyncProc(binding, -1);
    RpcBindingFree(&binding);
    RpcStringFreeA(&text);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
        fprintf(stderr, "usage: rpc_async_pair.exe server|client ENDPOINT\n");
        return 2;
    }
    the_endpoint = argv[2];
    return strcmp(argv[1], "server") == 0 ? serve() : client();
}
