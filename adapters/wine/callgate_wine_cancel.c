/*
 * callgate_wine_cancel.c: the Wine adapter's `thread_cancel` slots (DOMAIN.md section 2.8,
 * thread-level cancellation). Included by callgate_wine_adapter.c (one translation unit), so it
 * uses that file's helpers (arg_str, raised, guarded_call, struct result).
 *
 * A slot is one client thread of the adapter's own, started when the slot opens, in the MTA
 * (CoInitializeEx(COINIT_MULTITHREADED)). Each request that the model says runs on the client
 * thread is handed to it and waited for:
 *
 *   CoEnableCallCancellation / CoDisableCallCancellation  pReserved NULL, or a non-NULL pointer
 *   reinitialize       CoUninitialize then CoInitializeEx; the code is CoInitializeEx's
 *   CoSetCancelObject  the adapter's own cancel object (IUnknown and ICancelMethodCalls), an
 *                      object with IUnknown only, or NULL; output `held` is how many references
 *                      the runtime took on the object passed (on the one removed, for NULL)
 *
 * CoGetCancelObject(client thread id, iid, &pUnk) runs on the request thread, which is another
 * thread, as the model says; output `own` says whether the object returned is the slot's own.
 *
 * Wine 8.0's combase has CoSetCancelObject, CoGetCancelObject, CoCancelCall and CoTestCancel as
 * `@ stub`: calling one raises Wine's unimplemented-function exception (0x80000100). So they are
 * looked up with GetProcAddress (a missing export would stop the program from loading) and every
 * call is made inside guarded_call: an exception escaping it is the observation, its code with
 * `raised: true`, and the threads go on. Not driven (feature com.thread_cancel.call not
 * declared): a synchronous call the test server holds, and with it CoCancelCall and
 * CoTestCancel; the adapter has no IFoo proxy/stub to carry such a call (docs/wine.md).
 */

/* --- the adapter's cancel objects ------------------------------------------------------------ */

struct cancel_object {
    ICancelMethodCalls iface; /* also its IUnknown */
    volatile LONG refs;
    int cancel_interface;     /* 0: the plain object, which answers only IUnknown */
};

static HRESULT STDMETHODCALLTYPE cobj_QueryInterface(ICancelMethodCalls *self, REFIID riid,
                                                     void **out)
{
    struct cancel_object *o = (struct cancel_object *)self;
    if (IsEqualIID(riid, &IID_IUnknown) ||
        (o->cancel_interface && IsEqualIID(riid, &IID_ICancelMethodCalls))) {
        *out = self;
        InterlockedIncrement(&o->refs);
        return S_OK;
    }
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE cobj_AddRef(ICancelMethodCalls *self)
{
    return (ULONG)InterlockedIncrement(&((struct cancel_object *)self)->refs);
}

static ULONG STDMETHODCALLTYPE cobj_Release(ICancelMethodCalls *self)
{
    /* Never freed: the slot owns it, and a runtime may still hold references when it closes. */
    return (ULONG)InterlockedDecrement(&((struct cancel_object *)self)->refs);
}

static HRESULT STDMETHODCALLTYPE cobj_Cancel(ICancelMethodCalls *self, ULONG seconds)
{
    (void)self;
    (void)seconds;
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE cobj_TestCancel(ICancelMethodCalls *self)
{
    (void)self;
    return RPC_S_CALLPENDING;
}

static ICancelMethodCallsVtbl cancel_object_vtbl = {
    cobj_QueryInterface, cobj_AddRef, cobj_Release, cobj_Cancel, cobj_TestCancel,
};

/* --- the slot and its client thread ---------------------------------------------------------- */

typedef HRESULT(WINAPI *co_set_cancel_object_fn)(IUnknown *);
typedef HRESULT(WINAPI *co_get_cancel_object_fn)(DWORD, REFIID, void **);

struct tc_slot {
    HANDLE thread, go, done;
    DWORD tid;
    void (*job)(struct tc_slot *);
    const struct jsonl_request *q;
    HRESULT hr;
    int has_output;
    long long output;
    int quit;
    struct cancel_object own, plain;
    struct cancel_object *registered; /* the object the last successful CoSetCancelObject passed */
};

static co_set_cancel_object_fn co_set_cancel_object;
static co_get_cancel_object_fn co_get_cancel_object;

static void *combase_export(const char *name)
{
    const wchar_t *dlls[] = {L"ole32.dll", L"combase.dll"};
    for (int i = 0; i < 2; i++) {
        HMODULE m = GetModuleHandleW(dlls[i]);
        if (!m)
            m = LoadLibraryW(dlls[i]);
        FARPROC f = m ? GetProcAddress(m, name) : NULL;
        if (f)
            return (void *)f;
    }
    return NULL;
}

static void *tc_reserved(const struct jsonl_request *q)
{
    static DWORD reserved; /* any non-NULL pointer; the documentation says it must be NULL */
    return strcmp(arg_str(q, "pReserved"), "NULL") == 0 ? NULL : &reserved;
}

static void tc_enable(struct tc_slot *t) { t->hr = CoEnableCallCancellation(tc_reserved(t->q)); }
static void tc_disable(struct tc_slot *t) { t->hr = CoDisableCallCancellation(tc_reserved(t->q)); }

static void tc_reinit(struct tc_slot *t)
{
    CoUninitialize();
    t->hr = CoInitializeEx(NULL, COINIT_MULTITHREADED);
}

static void tc_set_cancel_object(struct tc_slot *t)
{
    const char *which = arg_str(t->q, "pUnk");
    struct cancel_object *o = strcmp(which, "cancel_object") == 0 ? &t->own
                              : strcmp(which, "plain_object") == 0 ? &t->plain : NULL;
    struct cancel_object *watched = o ? o : t->registered;
    LONG before = watched ? watched->refs : 0;
    t->hr = co_set_cancel_object(o ? (IUnknown *)&o->iface : NULL);
    t->has_output = 1;
    /* held: the references the runtime took on the object passed; for NULL, the references it
     * still holds on the object removed (the slot's own reference is the object's first). */
    if (o)
        t->output = o->refs - before;
    else
        t->output = watched ? watched->refs - 1 : 0;
    if (SUCCEEDED(t->hr))
        t->registered = o;
}

static void tc_job_now(void *arg)
{
    struct tc_slot *t = arg;
    t->job(t);
}

static DWORD WINAPI tc_thread_main(void *arg)
{
    struct tc_slot *t = arg;
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    for (;;) {
        WaitForSingleObject(t->go, INFINITE);
        if (t->quit)
            break;
        DWORD code = 0;
        t->has_output = 0;
        if (guarded_call(tc_job_now, t, &code)) {
            t->hr = (HRESULT)code;
            t->has_output = -1; /* raised */
        }
        SetEvent(t->done);
    }
    CoUninitialize();
    return 0;
}

/* Run a job on the client thread; the answer is its HRESULT (or the exception it raised). */
static struct result tc_on_thread(struct tc_slot *t, const struct jsonl_request *q,
                                  void (*job)(struct tc_slot *), const char *output)
{
    t->job = job;
    t->q = q;
    SetEvent(t->go);
    if (WaitForSingleObject(t->done, 10000) != WAIT_OBJECT_0)
        return result_error("the slot's client thread did not finish the call in 10 s");
    if (t->has_output < 0)
        return raised((DWORD)t->hr);
    struct result r = result_code((uint32_t)t->hr);
    if (output && t->has_output)
        output_int(&r, output, t->output);
    return r;
}

struct tc_get_call {
    struct tc_slot *t;
    const IID *iid;
    HRESULT hr;
    IUnknown *found;
};

static void tc_get_now(void *arg)
{
    struct tc_get_call *g = arg;
    g->hr = co_get_cancel_object(g->t->tid, g->iid, (void **)&g->found);
}

static struct result tc_open(struct tc_slot **out)
{
    if (!co_set_cancel_object) {
        co_set_cancel_object = (co_set_cancel_object_fn)combase_export("CoSetCancelObject");
        co_get_cancel_object = (co_get_cancel_object_fn)combase_export("CoGetCancelObject");
    }
    struct tc_slot *t = calloc(1, sizeof *t);
    if (!t)
        return result_error("out of memory");
    t->own = (struct cancel_object){{&cancel_object_vtbl}, 1, 1};
    t->plain = (struct cancel_object){{&cancel_object_vtbl}, 1, 0};
    t->go = CreateEventW(NULL, FALSE, FALSE, NULL);
    t->done = CreateEventW(NULL, FALSE, FALSE, NULL);
    t->thread = CreateThread(NULL, 0, tc_thread_main, t, 0, &t->tid);
    if (!t->go || !t->done || !t->thread) {
        free(t); /* the handles leak; this does not happen in practice */
        return result_error("could not start the slot's client thread");
    }
    *out = t;
    return result_ok();
}

static struct result tc_request(struct tc_slot *t, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (strcmp(op, "CoEnableCallCancellation") == 0)
        return tc_on_thread(t, q, tc_enable, NULL);
    if (strcmp(op, "CoDisableCallCancellation") == 0)
        return tc_on_thread(t, q, tc_disable, NULL);
    if (strcmp(op, "reinitialize") == 0)
        return tc_on_thread(t, q, tc_reinit, NULL);
    if (strcmp(op, "CoSetCancelObject") == 0) {
        if (!co_set_cancel_object)
            return result_not_applicable("CoSetCancelObject is not exported by ole32 or combase");
        return tc_on_thread(t, q, tc_set_cancel_object, "held");
    }
    if (strcmp(op, "CoGetCancelObject") == 0) {
        if (!co_get_cancel_object)
            return result_not_applicable("CoGetCancelObject is not exported by ole32 or combase");
        const char *iid = arg_str(q, "iid");
        struct tc_get_call g = {t, strcmp(iid, "IClassFactory") == 0 ? &IID_IClassFactory
                                                                       : &IID_ICancelMethodCalls,
                                0, NULL};
        DWORD code = 0;
        if (guarded_call(tc_get_now, &g, &code))
            return raised(code);
        struct result r = result_code((uint32_t)g.hr);
        if (SUCCEEDED(g.hr)) {
            output_bool(&r, "own", g.found == (IUnknown *)&t->own.iface);
            if (g.found)
                IUnknown_Release(g.found);
        }
        return r;
    }
    return result_not_applicable("this adapter does not drive a synchronous call on the "
                                 "thread_cancel machine (no IFoo proxy/stub)");
}

static void tc_close(struct tc_slot *t)
{
    t->quit = 1;
    SetEvent(t->go);
    WaitForSingleObject(t->thread, 2000);
    CloseHandle(t->thread);
    CloseHandle(t->go);
    CloseHandle(t->done);
    /* t stays allocated: a runtime may still hold references on its cancel objects */
}
