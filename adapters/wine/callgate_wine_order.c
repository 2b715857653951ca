/*
 * callgate_wine_order.c: the rpc_order machine (spec/DOMAIN.md section 2.17, dispatch order of
 * asynchronous calls on one binding, and RpcAsyncRegisterInfo) and the rpc_notif machine
 * (section 2.18, RpcServerSubscribeForNotification and RpcServerUnsubscribeForNotification).
 *
 * Included by callgate_wine_adapter.c (one compilation unit): it uses the test interface, the
 * test server's held calls (struct server_call, call_new, TestProc_async, SyncProc), bind_to,
 * server_start, guarded_call and raised from there.
 *
 * rpc_order: a slot is one binding handle to the test server; every call on it is made from the
 * request thread (jsonl_serve's loop), so one client thread makes them all. The test server's
 * manager routine stamps each call it is entered for with the next number of one counter
 * (`dispatch_stamp`), before it tells anyone; SyncProc's routine takes a stamp from the same
 * counter (`sync_stamp`). So the dispatch order the adapter reports is the order the routines
 * were entered, not the order the adapter happened to look.
 *
 * rpc_notif: Wine 8.0's rpcrt4.dll does not export RpcServerSubscribeForNotification or
 * RpcServerUnsubscribeForNotification. The adapter looks both up with GetProcAddress. When one is
 * absent, a call of it is answered with what a program gets that imports it: the loader's
 * STATUS_ENTRYPOINT_NOT_FOUND (0xC0000139), reported as raised (docs/wine.md, "A missing
 * interface"). Two forms of the subscription are argument checks whose documented result is any
 * failure (a kind outside RPC_NOTIFICATIONS; a NULL binding from a thread that runs no call): a
 * missing function fails them without checking anything, so they are answered not applicable
 * with that reason rather than passed. A wait for a notification when no subscription was ever
 * made is not applicable too: there is nothing to wait on. Should the functions be exported
 * (Windows, a later Wine), the slot refuses the subscription forms it does not drive (everything
 * but Event notification) as not applicable.
 */

#define ORDER_CALLS 2
#define STATUS_ENTRYPOINT_NOT_FOUND_ 0xC0000139u

struct order_call {
    RPC_ASYNC_STATE async;    /* heap, never freed: the runtime may still touch it */
    HANDLE event;             /* Event notification */
    struct server_call *server;
    int completed;
};

struct order_slot {
    RPC_BINDING_HANDLE binding;
    int issued;               /* asynchronous calls made: call 0, then call 1 */
    struct order_call *call[ORDER_CALLS];
    int reported[ORDER_CALLS];
};

static struct result order_open(struct order_slot **out)
{
    struct order_slot *o = calloc(1, sizeof *o);
    if (!o)
        return result_error("out of memory");
    RPC_STATUS status = server_start();
    if (status == RPC_S_OK)
        status = bind_to(endpoint, &o->binding);
    if (status != RPC_S_OK) {
        free(o);
        snprintf(message_buf, sizeof message_buf, "rpc_order: the in-process RPC server or the "
                 "binding to it failed (status %lu)", (unsigned long)status);
        return result_error(message_buf);
    }
    *out = o;
    return result_ok();
}

static void order_close(struct order_slot *o)
{
    for (int i = 0; i < o->issued; i++) {
        struct server_call *c = o->call[i]->server;
        if (c && !c->gone && WaitForSingleObject(c->arrived, 0) == WAIT_OBJECT_0 && c->held) {
            c->command = CMD_LET_GO;
            SetEvent(c->command_set);
            WaitForSingleObject(c->done, 1000);
        }
        if (!o->call[i]->completed && WaitForSingleObject(o->call[i]->event, 1000) == WAIT_OBJECT_0) {
            LONG_PTR reply = 0;
            RpcAsyncCompleteCall(&o->call[i]->async, &reply);
        }
    }
    /* The binding and the calls stay allocated: a call still in flight uses them. */
    free(o);
}

static struct result order_issue(struct order_slot *o)
{
    if (o->issued >= ORDER_CALLS)
        return result_error("issue_async: the slot tracks two calls");
    struct order_call *call = calloc(1, sizeof *call);
    struct server_call *server = call ? call_new() : NULL;
    if (!server)
        return result_error("out of memory");
    RPC_STATUS status = RpcAsyncInitializeHandle(&call->async, sizeof call->async);
    if (status != RPC_S_OK)
        return result_code((uint32_t)status);
    call->event = CreateEventW(NULL, FALSE, FALSE, NULL);
    call->async.NotificationType = RpcNotificationTypeEvent;
    call->async.u.hEvent = call->event;
    call->server = server;
    long result = TestProc_async(&call->async, o->binding, server->id);
    if (result != 0)
        return result_code((uint32_t)result); /* the stub raised: no call */
    o->call[o->issued++] = call;
    return result_code(RPC_S_OK);
}

/* The earliest-stamped call the routine was entered for and the adapter has not reported. */
static int order_first_unreported(struct order_slot *o)
{
    int best = -1;
    for (int i = 0; i < o->issued; i++) {
        LONG stamp = o->call[i]->server->stamp;
        if (!o->reported[i] && stamp && (best < 0 || stamp < o->call[best]->server->stamp))
            best = i;
    }
    return best;
}

static struct result order_next_dispatch(struct order_slot *o)
{
    DWORD start = GetTickCount();
    int next;
    while ((next = order_first_unreported(o)) < 0 && GetTickCount() - start < ARRIVAL_MS)
        Sleep(1);
    struct result r = result_code(RPC_S_OK);
    if (next >= 0) {
        o->reported[next] = 1;
    } else {
        fprintf(stderr, "callgate-wine-adapter: rpc_order: no issued call reached the manager "
                        "routine within %d ms\n", ARRIVAL_MS);
    }
    output_int(&r, "call", next);
    return r;
}

static struct result order_server_complete(struct order_slot *o, const struct jsonl_request *q)
{
    long long number = jarg_int(q, "call", -1);
    if (number < 0 || number >= o->issued)
        return result_error("server_complete: that call was never issued in this slot");
    struct order_call *call = o->call[number];
    struct server_call *c = call->server;
    if (c->gone || WaitForSingleObject(c->arrived, 0) != WAIT_OBJECT_0)
        return result_error("server_complete: the test server does not hold that call");
    c->command = CMD_COMPLETE;
    c->argument = (long)number;
    SetEvent(c->command_set);
    if (WaitForSingleObject(c->done, COMMAND_MS) != WAIT_OBJECT_0)
        return result_error("server_complete: the manager routine did not complete the call");
    if (c->exception)
        return raised((DWORD)c->exception);
    if (c->status != RPC_S_OK)
        return result_code(c->status); /* the server's RpcAsyncCompleteCall failed */
    if (WaitForSingleObject(call->event, ARRIVAL_MS) != WAIT_OBJECT_0) {
        snprintf(message_buf, sizeof message_buf, "server_complete: the call's event was not "
                 "set within %d ms of the server's completion", ARRIVAL_MS);
        return result_error(message_buf);
    }
    LONG_PTR reply = -1;
    RPC_STATUS status = RpcAsyncCompleteCall(&call->async, &reply);
    call->completed = 1;
    CloseHandle(call->event);
    struct result r = result_code((uint32_t)status);
    if (status == RPC_S_OK)
        output_int(&r, "reply", (uint32_t)reply);
    return r;
}

static struct result order_sync_call(struct order_slot *o)
{
    sync_stamp = 0;
    long value = SyncProc(o->binding, 0);
    (void)value;
    LONG at = sync_stamp;
    if (!at)
        return result_error("sync_call: the synchronous call returned without reaching the "
                            "test server's routine");
    int before = 0;
    for (int i = 0; i < o->issued; i++) {
        LONG stamp = o->call[i]->server->stamp;
        if (stamp && stamp < at)
            before++;
    }
    struct result r = result_code(RPC_S_OK);
    output_int(&r, "before", before);
    return r;
}

typedef RPC_STATUS(RPC_ENTRY *register_info_fn)(PRPC_MESSAGE);

static struct result order_register_info(struct order_slot *o)
{
    /* Microsoft's declaration (an RPC_MESSAGE); mingw's header gives another, so it is looked
     * up. Wine 8.0 exports it as a stub that raises 0x80000100 when called: request_now runs
     * inside guarded_call, so that is answered as raised. */
    register_info_fn fn = (register_info_fn)(void (*)(void))GetProcAddress(
        GetModuleHandleW(L"rpcrt4.dll"), "RpcAsyncRegisterInfo");
    if (!fn)
        return raised(STATUS_ENTRYPOINT_NOT_FOUND_);
    static RPC_MESSAGE msg;
    memset(&msg, 0, sizeof msg);
    msg.Handle = o->binding;
    msg.RpcInterfaceInformation = (void *)&client_interface;
    msg.ProcNum = 0;
    msg.RpcFlags = RPC_BUFFER_ASYNC;
    fprintf(stderr, "callgate-wine-adapter: calling RpcAsyncRegisterInfo\n");
    return result_code((uint32_t)fn(&msg));
}

static struct result order_request(struct order_slot *o, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (strcmp(op, "RpcBindingSetOption") == 0) {
        if (o->issued)
            return result_error("RpcBindingSetOption: sent only before the first call");
        return result_code((uint32_t)RpcBindingSetOption(o->binding, RPC_C_OPT_BINDING_NONCAUSAL,
                                                         jarg_bool(q, "value", 0) ? TRUE : FALSE));
    }
    if (strcmp(op, "issue_async") == 0)
        return order_issue(o);
    if (strcmp(op, "server_next_dispatch") == 0)
        return order_next_dispatch(o);
    if (strcmp(op, "server_complete") == 0)
        return order_server_complete(o, q);
    if (strcmp(op, "sync_call") == 0)
        return order_sync_call(o);
    if (strcmp(op, "RpcAsyncRegisterInfo") == 0)
        return order_register_info(o);
    return result_error("the rpc_order machine has no such operation in this adapter");
}

/* ======================================================================================== */
/* rpc_notif                                                                                */
/* ======================================================================================== */

typedef RPC_STATUS(RPC_ENTRY *subscribe_fn)(RPC_BINDING_HANDLE, DWORD, RPC_NOTIFICATION_TYPES,
                                            RPC_ASYNC_NOTIFICATION_INFO *);
typedef RPC_STATUS(RPC_ENTRY *unsubscribe_fn)(RPC_BINDING_HANDLE, DWORD, ULONG *);

struct notif_slot {
    RPC_BINDING_HANDLE binding;
    RPC_ASYNC_STATE *async;   /* heap, never freed */
    HANDLE event;
    struct server_call *server;
    int subscribed;           /* a subscription succeeded in this slot */
};

static FARPROC rpcrt4_export(const char *name)
{
    return GetProcAddress(GetModuleHandleW(L"rpcrt4.dll"), name);
}

static void notif_close(struct notif_slot *n)
{
    struct server_call *c = n->server;
    if (c && !c->gone && c->held) {
        c->command = CMD_LET_GO;
        SetEvent(c->command_set);
        WaitForSingleObject(c->done, 1000);
    }
    if (n->async && n->event && WaitForSingleObject(n->event, 1000) == WAIT_OBJECT_0) {
        LONG_PTR reply = 0;
        RpcAsyncCompleteCall(n->async, &reply);
    }
    free(n);
}

static struct result notif_call(struct notif_slot *n)
{
    if (n->server && !n->server->gone)
        return result_error("notif_call: the slot already holds a call");
    if (n->server) {
        /* The earlier call was completed by the server: the client collects its reply (not
         * judged here, rpc_call's business) before the new call gets a handle of its own. */
        if (WaitForSingleObject(n->event, ARRIVAL_MS) == WAIT_OBJECT_0) {
            LONG_PTR reply = 0;
            RpcAsyncCompleteCall(n->async, &reply);
        }
        CloseHandle(n->event);
        n->event = NULL;
        n->server = NULL;
        n->subscribed = 0;
    }
    RPC_STATUS status = server_start();
    if (status == RPC_S_OK && !n->binding)
        status = bind_to(endpoint, &n->binding);
    if (status != RPC_S_OK)
        return result_code((uint32_t)status);
    n->async = calloc(1, sizeof *n->async);
    struct server_call *server = n->async ? call_new() : NULL;
    if (!server)
        return result_error("out of memory");
    status = RpcAsyncInitializeHandle(n->async, sizeof *n->async);
    if (status != RPC_S_OK)
        return result_code((uint32_t)status);
    n->event = CreateEventW(NULL, FALSE, FALSE, NULL);
    n->async->NotificationType = RpcNotificationTypeEvent;
    n->async->u.hEvent = n->event;
    long result = TestProc_async(n->async, n->binding, server->id);
    if (result != 0)
        return result_code((uint32_t)result);
    n->server = server;
    if (WaitForSingleObject(server->arrived, ARRIVAL_MS) != WAIT_OBJECT_0) {
        snprintf(message_buf, sizeof message_buf, "notif_call: the call did not reach the "
                 "manager routine within %d ms", ARRIVAL_MS);
        return result_error(message_buf);
    }
    return result_code(RPC_S_OK);
}

static struct result notif_subscribe(struct notif_slot *n, const struct jsonl_request *q)
{
    const char *kinds = arg_str(q, "kinds"), *binding = arg_str(q, "binding");
    int check = strcmp(kinds, "other") == 0 || strcmp(binding, "NULL_other_thread") == 0;
    subscribe_fn fn = (subscribe_fn)(void (*)(void))rpcrt4_export(
        "RpcServerSubscribeForNotification");
    if (!fn) {
        if (check)
            return result_not_applicable(
                "RpcServerSubscribeForNotification is not exported by this rpcrt4.dll: a "
                "missing function fails this argument check without checking anything, so "
                "the check cannot be shown (the valid forms report the missing function)");
        fprintf(stderr, "callgate-wine-adapter: rpcrt4.dll does not export "
                        "RpcServerSubscribeForNotification; reported as raised 0xC0000139 "
                        "(STATUS_ENTRYPOINT_NOT_FOUND, the loader's answer to the import)\n");
        return raised(STATUS_ENTRYPOINT_NOT_FOUND_);
    }
    (void)n;
    return result_not_applicable("this adapter drives RpcServerSubscribeForNotification only "
                                 "where rpcrt4.dll lacks it (Wine 8.0)");
}

static struct result notif_unsubscribe(struct notif_slot *n, const struct jsonl_request *q)
{
    (void)q;
    unsubscribe_fn fn = (unsubscribe_fn)(void (*)(void))rpcrt4_export(
        "RpcServerUnsubscribeForNotification");
    if (!fn) {
        fprintf(stderr, "callgate-wine-adapter: rpcrt4.dll does not export "
                        "RpcServerUnsubscribeForNotification; reported as raised 0xC0000139\n");
        return raised(STATUS_ENTRYPOINT_NOT_FOUND_);
    }
    (void)n;
    return result_not_applicable("this adapter drives RpcServerUnsubscribeForNotification only "
                                 "where rpcrt4.dll lacks it (Wine 8.0)");
}

static struct result notif_server_complete(struct notif_slot *n)
{
    struct server_call *c = n->server;
    if (!c || c->gone)
        return result_error("server_complete: the test server holds no call in this slot");
    c->command = CMD_COMPLETE;
    c->argument = 0;
    SetEvent(c->command_set);
    if (WaitForSingleObject(c->done, COMMAND_MS) != WAIT_OBJECT_0)
        return result_error("server_complete: the manager routine did not complete the call");
    if (c->exception)
        return raised((DWORD)c->exception);
    return result_code(c->status);
}

static struct result notif_request(struct notif_slot *n, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (strcmp(op, "notif_call") == 0)
        return notif_call(n);
    if (strcmp(op, "RpcServerSubscribeForNotification") == 0)
        return notif_subscribe(n, q);
    if (strcmp(op, "RpcServerUnsubscribeForNotification") == 0)
        return notif_unsubscribe(n, q);
    if (strcmp(op, "server_wait_notification") == 0) {
        if (!n->subscribed)
            return result_not_applicable("no subscription was made in this slot (the "
                                         "subscription failed), so there is nothing to wait on");
        return result_count(0);
    }
    if (strcmp(op, "RpcAsyncCancelCall") == 0)
        return n->async ? result_code((uint32_t)RpcAsyncCancelCall(n->async, FALSE))
                        : result_error("RpcAsyncCancelCall: no call was made in this slot");
    if (strcmp(op, "server_complete") == 0)
        return notif_server_complete(n);
    return result_error("the rpc_notif machine has no such operation in this adapter");
}
