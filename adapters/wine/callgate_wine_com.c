/*
 * callgate_wine_com.c: the Wine adapter's COM test server and its `com_call` slots. Included by
 * callgate_wine_adapter.c (one translation unit), so it uses that file's helpers.
 *
 * The test server object implements IFoo (uuid 5c2e3a52-...: HRESULT M([in] ULONG in, [out]
 * ULONG *out)) and ICallFactory, whose CreateCall makes a call object for AsyncIFoo (the
 * [async_uuid] counterpart, 5c2e3a53-...: Begin_M([in] ULONG in), Finish_M([out] ULONG *out)).
 * The call object gets ISynchronize from Wine: it contains a CLSID_ManualResetEvent made with
 * CoCreateInstance (Wine's ManualResetEvent ignores aggregation, COM-SYNC-09) and forwards
 * Wait, Signal and Reset to it. It has no ICancelMethodCalls and no IClientSecurity.
 *
 * Two configurations, chosen on the command line and declared in the handshake (pin
 * call_object_origin):
 *
 *   --com=marshaled  (standard_marshaling, the default) The server objects live in an STA
 *                    thread; the client holds a standard proxy of their IUnknown, unmarshaled
 *                    in the MTA (CoMarshalInterThreadInterfaceInStream). QueryInterface,
 *                    CreateCall and sync_call go through that proxy; the output `server_asked`
 *                    says how often Wine's stub asked the server object for ICallFactory.
 *   --com=inproc     (same_apartment) The client uses the server object itself, without
 *                    marshaling: its own CreateCall gives the call object. Begin_/Finish_ and
 *                    the call object's state are this file's code; the ISynchronize behind the
 *                    call object (Wait, Signal, Reset) is Wine's.
 *
 * IFoo has no proxy/stub here (no available widl can compile an IDL that imports unknwn.idl:
 * mingw-w64 ships no .idl files), so a proxy cannot carry IFoo::M: sync_call is not applicable
 * in the marshaled configuration.
 */

static const IID IID_IFoo_ = {0x5c2e3a52, 0x6f0b, 0x4b7e, {0x9a, 0x57, 0x1c, 0x0a, 0x11, 0xca, 0x11, 0xa7}};
static const IID IID_AsyncIFoo_ = {0x5c2e3a53, 0x6f0b, 0x4b7e, {0x9a, 0x57, 0x1c, 0x0a, 0x11, 0xca, 0x11, 0xa7}};

enum com_mode { COM_MARSHALED, COM_INPROC };
static enum com_mode com_mode = COM_MARSHALED;

/* --- IFoo and AsyncIFoo, written out as widl would declare them ------------------------------ */

typedef struct IFoo IFoo;
typedef struct IFooVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(IFoo *, REFIID, void **);
    ULONG(STDMETHODCALLTYPE *AddRef)(IFoo *);
    ULONG(STDMETHODCALLTYPE *Release)(IFoo *);
    HRESULT(STDMETHODCALLTYPE *M)(IFoo *, ULONG in, ULONG *out);
} IFooVtbl;
struct IFoo { const IFooVtbl *lpVtbl; };

typedef struct AsyncIFoo AsyncIFoo;
typedef struct AsyncIFooVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(AsyncIFoo *, REFIID, void **);
    ULONG(STDMETHODCALLTYPE *AddRef)(AsyncIFoo *);
    ULONG(STDMETHODCALLTYPE *Release)(AsyncIFoo *);
    HRESULT(STDMETHODCALLTYPE *Begin_M)(AsyncIFoo *, ULONG in);
    HRESULT(STDMETHODCALLTYPE *Finish_M)(AsyncIFoo *, ULONG *out);
} AsyncIFooVtbl;
struct AsyncIFoo { const AsyncIFooVtbl *lpVtbl; };
#define AsyncIFoo_QueryInterface_(p, riid, out) (p)->lpVtbl->QueryInterface((p), (riid), (out))

/* --- the call object ----------------------------------------------------------------------- */

enum call_phase { FOO_IDLE, FOO_PENDING, FOO_SIGNALED };

struct foo_call {
    AsyncIFoo async;          /* the primary interface, and IUnknown */
    ISynchronize sync;        /* forwards to `event` */
    volatile LONG refs;
    ISynchronize *event;      /* Wine's CLSID_ManualResetEvent */
    enum call_phase phase;
    ULONG in, out;
};

static struct foo_call *call_of_async(AsyncIFoo *a) { return (struct foo_call *)a; }
static struct foo_call *call_of_sync(ISynchronize *s)
{
    return (struct foo_call *)((char *)s - offsetof(struct foo_call, sync));
}

static HRESULT call_query(struct foo_call *c, REFIID riid, void **out)
{
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_AsyncIFoo_))
        *out = &c->async;
    else if (IsEqualIID(riid, &IID_ISynchronize))
        *out = &c->sync;
    else {
        *out = NULL;
        return E_NOINTERFACE;
    }
    InterlockedIncrement(&c->refs);
    return S_OK;
}

static ULONG call_release(struct foo_call *c)
{
    LONG refs = InterlockedDecrement(&c->refs);
    if (refs == 0) {
        ISynchronize_Release(c->event);
        free(c);
    }
    return (ULONG)refs;
}

static HRESULT STDMETHODCALLTYPE async_QueryInterface(AsyncIFoo *self, REFIID riid, void **out)
{
    return call_query(call_of_async(self), riid, out);
}
static ULONG STDMETHODCALLTYPE async_AddRef(AsyncIFoo *self)
{
    return (ULONG)InterlockedIncrement(&call_of_async(self)->refs);
}
static ULONG STDMETHODCALLTYPE async_Release(AsyncIFoo *self)
{
    return call_release(call_of_async(self));
}

/* Begin_M: the test server's processing starts and is held until the harness says
 * server_signal; the server holds a reference to the call object meanwhile. */
static HRESULT STDMETHODCALLTYPE async_Begin_M(AsyncIFoo *self, ULONG in)
{
    struct foo_call *c = call_of_async(self);
    if (c->phase != FOO_IDLE)
        return RPC_S_CALLPENDING; /* the nearest real code to RPC_E_FOO_PENDING (D-02) */
    c->phase = FOO_PENDING;
    c->in = in;
    c->out = 0;
    InterlockedIncrement(&c->refs);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE async_Finish_M(AsyncIFoo *self, ULONG *out)
{
    struct foo_call *c = call_of_async(self);
    if (c->phase == FOO_IDLE)
        return RPC_E_CALL_COMPLETE;
    if (c->phase == FOO_PENDING) {
        /* Undefined by the documentation (COM-FIN-03); callgate never asks. */
        HRESULT hr = ISynchronize_Wait(c->event, 0, INFINITE);
        if (FAILED(hr))
            return hr;
    }
    *out = c->out;
    c->phase = FOO_IDLE;
    ISynchronize_Reset(c->event); /* the server resets for the next call (COM-SYNC-05) */
    return S_OK;
}

static const AsyncIFooVtbl async_vtbl = {async_QueryInterface, async_AddRef, async_Release,
                                         async_Begin_M, async_Finish_M};

static HRESULT STDMETHODCALLTYPE csync_QueryInterface(ISynchronize *self, REFIID riid, void **out)
{
    return call_query(call_of_sync(self), riid, out);
}
static ULONG STDMETHODCALLTYPE csync_AddRef(ISynchronize *self)
{
    return (ULONG)InterlockedIncrement(&call_of_sync(self)->refs);
}
static ULONG STDMETHODCALLTYPE csync_Release(ISynchronize *self)
{
    return call_release(call_of_sync(self));
}
static HRESULT STDMETHODCALLTYPE csync_Wait(ISynchronize *self, DWORD flags, DWORD ms)
{
    return ISynchronize_Wait(call_of_sync(self)->event, flags, ms); /* Wine's */
}
static HRESULT STDMETHODCALLTYPE csync_Signal(ISynchronize *self)
{
    return ISynchronize_Signal(call_of_sync(self)->event);
}
static HRESULT STDMETHODCALLTYPE csync_Reset(ISynchronize *self)
{
    return ISynchronize_Reset(call_of_sync(self)->event);
}

static ISynchronizeVtbl csync_vtbl = {csync_QueryInterface, csync_AddRef, csync_Release,
                                      csync_Wait, csync_Signal, csync_Reset};

/* --- the server object: IFoo and (unless made without) ICallFactory ------------------------ */

struct foo_server {
    IFoo foo;                  /* the primary interface, and IUnknown */
    ICallFactory factory;
    volatile LONG refs;
    int has_factory;
    volatile LONG asked;       /* QueryInterface(IID_ICallFactory) calls that reached the object */
};

static struct foo_server *server_of_foo(IFoo *f) { return (struct foo_server *)f; }
static struct foo_server *server_of_factory(ICallFactory *f)
{
    return (struct foo_server *)((char *)f - offsetof(struct foo_server, factory));
}

static HRESULT server_query(struct foo_server *s, REFIID riid, void **out)
{
    *out = NULL;
    if (IsEqualIID(riid, &IID_ICallFactory)) {
        InterlockedIncrement(&s->asked);
        if (!s->has_factory)
            return E_NOINTERFACE;
        *out = &s->factory;
    } else if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFoo_)) {
        *out = &s->foo;
    } else {
        return E_NOINTERFACE;
    }
    InterlockedIncrement(&s->refs);
    return S_OK;
}

static ULONG server_release(struct foo_server *s)
{
    LONG refs = InterlockedDecrement(&s->refs);
    if (refs == 0)
        free(s);
    return (ULONG)refs;
}

static HRESULT STDMETHODCALLTYPE foo_QueryInterface(IFoo *self, REFIID riid, void **out)
{
    return server_query(server_of_foo(self), riid, out);
}
static ULONG STDMETHODCALLTYPE foo_AddRef(IFoo *self)
{
    return (ULONG)InterlockedIncrement(&server_of_foo(self)->refs);
}
static ULONG STDMETHODCALLTYPE foo_Release(IFoo *self)
{
    return server_release(server_of_foo(self));
}
/* The synchronous method: the test server answers at once with `in` as [out]. */
static HRESULT STDMETHODCALLTYPE foo_M(IFoo *self, ULONG in, ULONG *out)
{
    (void)self;
    *out = in;
    return S_OK;
}
static const IFooVtbl foo_vtbl = {foo_QueryInterface, foo_AddRef, foo_Release, foo_M};

static HRESULT STDMETHODCALLTYPE factory_QueryInterface(ICallFactory *self, REFIID riid, void **out)
{
    return server_query(server_of_factory(self), riid, out);
}
static ULONG STDMETHODCALLTYPE factory_AddRef(ICallFactory *self)
{
    return (ULONG)InterlockedIncrement(&server_of_factory(self)->refs);
}
static ULONG STDMETHODCALLTYPE factory_Release(ICallFactory *self)
{
    return server_release(server_of_factory(self));
}

static HRESULT STDMETHODCALLTYPE factory_CreateCall(ICallFactory *self, REFIID riid,
                                                    IUnknown *outer, REFIID riid2, IUnknown **ppv)
{
    (void)self;
    if (!ppv)
        return E_INVALIDARG;
    *ppv = NULL;
    if (!IsEqualIID(riid, &IID_AsyncIFoo_))
        return E_NOINTERFACE; /* COM-CF-03 */
    if (outer)
        return CLASS_E_NOAGGREGATION; /* this server's call object does not aggregate */
    struct foo_call *c = calloc(1, sizeof *c);
    if (!c)
        return E_OUTOFMEMORY;
    HRESULT hr = CoCreateInstance(&CLSID_ManualResetEvent_, NULL, CLSCTX_INPROC_SERVER,
                                  &IID_ISynchronize, (void **)&c->event);
    if (FAILED(hr)) {
        free(c);
        return hr;
    }
    c->async.lpVtbl = &async_vtbl;
    c->sync.lpVtbl = &csync_vtbl;
    c->refs = 1;
    hr = call_query(c, riid2, (void **)ppv);
    call_release(c);
    return hr;
}

static ICallFactoryVtbl factory_vtbl = {factory_QueryInterface, factory_AddRef,
                                        factory_Release, factory_CreateCall};

static struct foo_server *server_new(int has_factory)
{
    struct foo_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->foo.lpVtbl = &foo_vtbl;
    s->factory.lpVtbl = &factory_vtbl;
    s->refs = 1;
    s->has_factory = has_factory;
    return s;
}

/* --- the marshaled configuration: server objects in an STA, proxies in the MTA ------------- */

static struct foo_server *sta_servers[2];  /* [has_factory] */
static IStream *sta_streams[2];
static HRESULT sta_marshal_hr[2] = {E_FAIL, E_FAIL};
static IUnknown *proxies[2];               /* unmarshaled in the MTA */
static HRESULT proxy_hr[2] = {E_FAIL, E_FAIL};
static HANDLE sta_ready;
static DWORD sta_tid;

static DWORD WINAPI sta_main(void *arg)
{
    (void)arg;
    MSG msg;
    CoInitializeEx(NULL, COINIT_APARTMENTTHREADED);
    PeekMessageW(&msg, NULL, 0, 0, PM_NOREMOVE); /* create the message queue */
    for (int f = 0; f < 2; f++) {
        sta_servers[f] = server_new(f);
        sta_marshal_hr[f] = sta_servers[f]
            ? CoMarshalInterThreadInterfaceInStream(&IID_IUnknown, (IUnknown *)&sta_servers[f]->foo,
                                                    &sta_streams[f])
            : E_OUTOFMEMORY;
    }
    SetEvent(sta_ready);
    while (GetMessageW(&msg, NULL, 0, 0) > 0)
        DispatchMessageW(&msg);
    CoUninitialize();
    return 0;
}

static char com_notes[1024];

/* Set up the configuration and write what was seen into the handshake's notes. */
static void com_setup(void)
{
    if (com_mode == COM_INPROC) {
        snprintf(com_notes, sizeof com_notes,
                 "com_call configuration inproc (call_object_origin same_apartment): the test "
                 "server object (IFoo with ICallFactory, AsyncIFoo call objects) is used without "
                 "marshaling. Begin_/Finish_ and the call object's state are the adapter's own "
                 "server code; the call object's ISynchronize is Wine's CLSID_ManualResetEvent. "
                 "No ICancelMethodCalls, no IClientSecurity, no aggregation.");
        return;
    }
    sta_ready = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE thread = CreateThread(NULL, 0, sta_main, NULL, 0, &sta_tid);
    if (thread && WaitForSingleObject(sta_ready, 5000) == WAIT_OBJECT_0) {
        for (int f = 0; f < 2; f++)
            if (SUCCEEDED(sta_marshal_hr[f]))
                proxy_hr[f] = CoGetInterfaceAndReleaseStream(sta_streams[f], &IID_IUnknown,
                                                             (void **)&proxies[f]);
    }
    /* What Wine's proxy does with ICallFactory, asked once here for the notes. */
    HRESULT qi = E_FAIL;
    LONG asked = 0;
    if (proxies[1]) {
        void *factory = NULL;
        LONG before = sta_servers[1]->asked;
        qi = IUnknown_QueryInterface(proxies[1], &IID_ICallFactory, &factory);
        asked = sta_servers[1]->asked - before;
        if (SUCCEEDED(qi))
            IUnknown_Release((IUnknown *)factory);
    }
    snprintf(com_notes, sizeof com_notes,
             "com_call configuration marshaled (call_object_origin standard_marshaling): a test "
             "server object implementing IFoo and ICallFactory (AsyncIFoo is IFoo's async_uuid "
             "counterpart), in an STA thread, its IUnknown marshaled with "
             "CoMarshalInterThreadInterfaceInStream (0x%08lX) and unmarshaled in the MTA "
             "(0x%08lX). The proxy answered QueryInterface(IID_ICallFactory) with 0x%08lX%s; "
             "the server object was asked for ICallFactory %ld time(s). No IFoo proxy/stub is "
             "built, so IFoo::M (sync_call) cannot cross the apartment boundary.",
             (unsigned long)sta_marshal_hr[1], (unsigned long)proxy_hr[1], (unsigned long)qi,
             qi == E_NOINTERFACE ? " (E_NOINTERFACE)" : "", (long)asked);
}

/* --- com_call slots ------------------------------------------------------------------------ */

struct com_slot {
    int has_factory;
    IUnknown *object;      /* the server object (inproc) or its proxy (marshaled) */
    struct foo_server *server; /* the server object behind it */
    AsyncIFoo *call;       /* the client's call object, or NULL */
    struct foo_call *held; /* the call whose Begin_ processing the test server holds */
    struct foo_call *orphan; /* a held call the client abandoned */
};

static struct result com_open(int has_factory, struct com_slot **out)
{
    struct com_slot *c = calloc(1, sizeof *c);
    if (!c)
        return result_error("out of memory");
    c->has_factory = has_factory;
    if (com_mode == COM_INPROC) {
        c->server = server_new(has_factory);
        if (!c->server) {
            free(c);
            return result_error("out of memory");
        }
        c->object = (IUnknown *)&c->server->foo;
    } else {
        if (!proxies[has_factory]) {
            free(c);
            snprintf(message_buf, sizeof message_buf, "no proxy of the test server object: "
                     "marshaling gave 0x%08lX, unmarshaling 0x%08lX",
                     (unsigned long)sta_marshal_hr[has_factory],
                     (unsigned long)proxy_hr[has_factory]);
            return result_error(message_buf);
        }
        c->server = sta_servers[has_factory];
        c->object = proxies[has_factory];
        IUnknown_AddRef(c->object);
    }
    *out = c;
    return result_ok();
}

/* The server's processing of the held call ends: it signals (Wine's ManualResetEvent) with
 * [out] = out, and gives up its reference. */
static HRESULT server_signal_call(struct foo_call *held, ULONG out)
{
    held->out = out;
    held->phase = FOO_SIGNALED;
    HRESULT hr = ISynchronize_Signal(held->event);
    return hr;
}

static struct result com_request(struct com_slot *c, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (strcmp(op, "QueryInterface") == 0) {
        const char *iid = arg_str(q, "iid");
        void *got = NULL;
        HRESULT hr;
        if (strcmp(iid, "ICallFactory") == 0) {
            LONG before = c->server->asked;
            hr = IUnknown_QueryInterface(c->object, &IID_ICallFactory, &got);
            LONG asked = c->server->asked - before;
            if (SUCCEEDED(hr))
                IUnknown_Release((IUnknown *)got);
            struct result r = result_code((uint32_t)hr);
            output_int(&r, "server_asked", asked);
            return r;
        }
        if (!c->call)
            return result_error("QueryInterface: the slot holds no call object");
        const IID *want = strcmp(iid, "ISynchronize") == 0 ? &IID_ISynchronize
                        : strcmp(iid, "ICancelMethodCalls") == 0 ? &IID_ICancelMethodCalls
                        : strcmp(iid, "IClientSecurity") == 0 ? &IID_IClientSecurity
                        : strcmp(iid, "AsyncIFoo") == 0 ? &IID_AsyncIFoo_ : NULL;
        if (!want)
            return result_error("QueryInterface: unknown iid");
        hr = AsyncIFoo_QueryInterface_(c->call, want, &got);
        if (SUCCEEDED(hr))
            IUnknown_Release((IUnknown *)got);
        return result_code((uint32_t)hr);
    }
    if (strcmp(op, "CreateCall") == 0) {
        if (c->call)
            return result_error("CreateCall: the slot holds a call object already");
        ICallFactory *factory = NULL;
        HRESULT hr = IUnknown_QueryInterface(c->object, &IID_ICallFactory, (void **)&factory);
        if (FAILED(hr)) {
            snprintf(message_buf, sizeof message_buf, "CreateCall cannot be called: the %s "
                     "answered QueryInterface(IID_ICallFactory) with 0x%08lX, so the client has "
                     "no ICallFactory (the QueryInterface step of the model judges that)",
                     com_mode == COM_MARSHALED ? "standard proxy" : "server object",
                     (unsigned long)hr);
            return result_not_applicable(message_buf);
        }
        int sync = strcmp(arg_str(q, "riid"), "sync") == 0;
        int aggregate = jarg_bool(q, "aggregate", 0);
        IUnknown *made = NULL;
        hr = ICallFactory_CreateCall(factory, sync ? &IID_IFoo_ : &IID_AsyncIFoo_,
                                     aggregate ? c->object : NULL,
                                     aggregate ? &IID_IUnknown : &IID_AsyncIFoo_, &made);
        ICallFactory_Release(factory); /* COM-CF-07: the call object stays usable */
        if (SUCCEEDED(hr) && made) {
            if (aggregate) { /* not reached: this server refuses aggregation */
                IUnknown_Release(made);
            } else {
                c->call = (AsyncIFoo *)made;
            }
        }
        return result_code((uint32_t)hr);
    }
    if (strcmp(op, "sync_call") == 0) {
        if (com_mode == COM_MARSHALED)
            return result_not_applicable("no IFoo proxy/stub is built, so IFoo::M cannot be "
                                         "called through the proxy");
        IFoo *foo = NULL;
        HRESULT hr = IUnknown_QueryInterface(c->object, &IID_IFoo_, (void **)&foo);
        if (FAILED(hr))
            return result_code((uint32_t)hr);
        ULONG value = 0;
        hr = foo->lpVtbl->M(foo, (ULONG)jarg_int(q, "out", 1), &value);
        foo->lpVtbl->Release(foo);
        struct result r = result_code((uint32_t)hr);
        if (SUCCEEDED(hr))
            output_int(&r, "out", value);
        return r;
    }
    if (strcmp(op, "server_signal_late") == 0) {
        if (!c->orphan)
            return result_error("server_signal_late: no abandoned call is held");
        struct foo_call *o = c->orphan;
        c->orphan = NULL;
        HRESULT hr = server_signal_call(o, 1);
        call_release(o);
        return result_code((uint32_t)hr);
    }
    if (!c->call)
        return result_error("the slot holds no call object");
    if (strcmp(op, "Begin_") == 0) {
        struct foo_call *fc = call_of_async(c->call);
        HRESULT hr = c->call->lpVtbl->Begin_M(c->call, 7);
        if (SUCCEEDED(hr) && fc->phase == FOO_PENDING && !c->held)
            c->held = fc; /* Begin_M took the server's reference */
        return result_code((uint32_t)hr);
    }
    if (strcmp(op, "Wait") == 0) {
        ISynchronize *sync = NULL;
        HRESULT hr = AsyncIFoo_QueryInterface_(c->call, &IID_ISynchronize, (void **)&sync);
        if (FAILED(hr))
            return result_error("Wait: the call object has no ISynchronize");
        const char *t = arg_str(q, "timeout");
        DWORD ms = strcmp(t, "zero") == 0 ? 0 : strcmp(t, "infinite") == 0 ? INFINITE
                 : (DWORD)q->wait_ms;
        hr = ISynchronize_Wait(sync, 0, ms);
        ISynchronize_Release(sync);
        return result_code((uint32_t)hr);
    }
    if (strcmp(op, "Finish_") == 0) {
        ULONG value = 0;
        HRESULT hr = c->call->lpVtbl->Finish_M(c->call, &value);
        struct result r = result_code((uint32_t)hr);
        if (SUCCEEDED(hr))
            output_int(&r, "out", value);
        return r;
    }
    if (strcmp(op, "Release") == 0) {
        AsyncIFoo *call = c->call;
        c->call = NULL;
        if (c->held) { /* the test server still holds its Begin_: the call is abandoned */
            c->orphan = c->held;
            c->held = NULL;
        }
        return result_code(call->lpVtbl->Release(call));
    }
    if (strcmp(op, "server_signal") == 0) {
        if (!c->held)
            return result_error("server_signal: the test server holds no call");
        struct foo_call *h = c->held;
        c->held = NULL;
        HRESULT hr = server_signal_call(h, (ULONG)jarg_int(q, "out", 1));
        struct result r = result_code((uint32_t)hr);
        if (jarg_bool(q, "then_impersonate", 0))
            output_int(&r, "impersonate", (uint32_t)CoImpersonateClient());
        call_release(h);
        return r;
    }
    return result_error("the com_call machine has no such operation in this adapter");
}

static void com_close(struct com_slot *c)
{
    if (c->held)
        call_release(c->held);
    if (c->orphan)
        call_release(c->orphan);
    if (c->call)
        c->call->lpVtbl->Release(c->call);
    IUnknown_Release(c->object);
    free(c);
}
