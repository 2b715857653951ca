/* Section 2.19 (asynchronous pipes) on Wine: a probe, no driver.
 *
 * An asynchronous pipe is marshaled by the NDR engine through rpcrt4's pipe entry points
 * (NdrPipesInitialize, NdrPipePull, NdrPipePush, NdrPipesDone, ...), which MIDL-generated stubs
 * call. Wine 8.0 exports them as `@ stub`: each raises Wine's unimplemented-function exception
 * 0x80000100 when called, before it reads an argument. So the adapter declares no `rpc.pipe`
 * and says why in the handshake's `absent` (docs/adapter-protocol.md): the report shows the
 * rules only the rpc_pipe machine reaches as not applicable with this reason.
 *
 * The probe calls each entry point once, guarded (guarded_call, callgate_wine_guard.h), with
 * NULL arguments, and only under Wine: an implementation that is not a stub would be handed
 * NULL pointers, so elsewhere nothing is called and the reason says the adapter has no pipe
 * driver. Included by callgate_wine_adapter.c (one compilation unit). */

typedef void (*pipe_entry_fn)(void *, void *, void *, void *);
static pipe_entry_fn pipe_probe_target;

static void pipe_probe_call(void *arg)
{
    (void)arg;
    pipe_probe_target(NULL, NULL, NULL, NULL);
}

#define PIPE_STUB_EXCEPTION 0x80000100UL /* Wine's unimplemented-function exception */

/* Why the adapter does not declare rpc.pipe, written into buf (plain text for the report). */
static void pipe_absent_reason(char *buf, size_t n, int on_wine)
{
    static const char *const names[] = {
        "NdrPipesInitialize", "NdrPipePull", "NdrPipePush", "NdrPipesDone",
        "NdrIsAppDoneWithPipes", "NdrMarkNextActivePipe", "NdrPipeSendReceive",
        "NdrGetPipeBuffer"};
    char stubs[512] = "", others[512] = "";
    HMODULE rpcrt4 = GetModuleHandleW(L"rpcrt4.dll");
    if (!on_wine || !rpcrt4) {
        snprintf(buf, n, "the adapter has no driver for asynchronous pipes (section 2.19); "
                         "rpcrt4's pipe entry points were not probed (not running under Wine)");
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        pipe_probe_target = (pipe_entry_fn)(void (*)(void))GetProcAddress(rpcrt4, names[i]);
        DWORD code = 0;
        char *into = others;
        if (!pipe_probe_target) {
            code = 0xC0000139UL; /* STATUS_ENTRYPOINT_NOT_FOUND */
        } else if (guarded_call(pipe_probe_call, NULL, &code) && code == PIPE_STUB_EXCEPTION) {
            into = stubs;
        }
        size_t used = strlen(into);
        snprintf(into + used, 512 - used, "%s%s", used ? ", " : "", names[i]);
        if (into == others) {
            used = strlen(into);
            snprintf(into + used, 512 - used, " (%s)", pipe_probe_target ? "not a stub" : "missing");
        }
    }
    if (!others[0])
        snprintf(buf, n, "probed at start: rpcrt4's NDR pipe entry points (%s) are stubs that "
                         "raise 0x80000100 when called, so no asynchronous pipe can be "
                         "marshaled; the adapter drives no pipe", stubs);
    else
        snprintf(buf, n, "the adapter has no driver for asynchronous pipes (section 2.19); "
                         "probed at start: stubs raising 0x80000100: %s; others: %s",
                 stubs[0] ? stubs : "none", others);
}
