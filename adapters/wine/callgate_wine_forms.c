/* callgate_wine_forms.c: the argument forms of issue 17 that the Wine adapter drives besides the
 * usual ones. Included by callgate_wine_adapter.c (one translation unit), after the test server
 * and the client call it uses.
 *
 *  - AsyncCall with NotificationType Apc and u.APC.hThread NULL: the documentation says the APC
 *    then goes to the thread that issued the call (RPC-CLI-NOTIFY-02, D-14). `hThread` "NULL"
 *    in the request asks for that form; "explicit" (or no field) names the issuing thread.
 *  - server_complete and server_abort with `thread` "later": the manager routine returns without
 *    ending the call (it hands the call off), and a thread of the adapter's own, started after
 *    the routine returned, calls RpcAsyncCompleteCall or RpcAsyncAbortCall on the server handle
 *    (RPC-SRV-COMPLETE-07: any thread may complete the call). That call runs guarded: an
 *    exception it raises is reported as `raised` with its code, and only that thread ends.
 */

/* How long the later thread waits after the manager routine said it is returning, so that the
 * routine has returned (and the runtime has done whatever it does on that return) before the
 * server handle is used again. */
#define LATER_MS 100

/* u.APC.hThread for AsyncCall: NULL, or a handle of the issuing thread kept in c->thread (closed
 * with the call's other resources). */
static HANDLE apc_thread(struct client_call *c, const char *form)
{
    if (strcmp(form, "NULL") == 0) {
        c->thread = NULL;
        return NULL; /* the thread that issues the call, RPC-CLI-NOTIFY-02 */
    }
    DuplicateHandle(GetCurrentProcess(), GetCurrentThread(), GetCurrentProcess(), &c->thread, 0,
                    FALSE, DUPLICATE_SAME_ACCESS);
    return c->thread;
}

/* The request's `thread` is "later" (absent or "routine": the manager routine acts itself). */
static int later_thread(const struct jsonl_request *q)
{
    return strcmp(arg_str(q, "thread"), "later") == 0;
}

struct later_end {
    struct server_call *call;
    enum command command; /* CMD_COMPLETE or CMD_ABORT */
    long argument;        /* the reply, or the abort code */
    uint32_t status;
    struct guard guard;
};

static DWORD WINAPI later_main(void *arg)
{
    struct later_end *l = arg;
    LONG_PTR reply = l->argument;
    Sleep(LATER_MS);
    TlsSetValue(guard_slot, &l->guard);
    if (l->command == CMD_COMPLETE)
        l->status = (uint32_t)RpcAsyncCompleteCall(l->call->pAsync, &reply);
    else
        l->status = (uint32_t)RpcAsyncAbortCall(l->call->pAsync, (unsigned long)l->argument);
    TlsSetValue(guard_slot, NULL);
    return 0;
}

/* server_complete or server_abort with thread "later": the routine returns without ending the
 * call, then another thread ends it. Answered with what that thread's call returned. */
static struct result server_later(struct slot *s, enum command command, long argument)
{
    struct result handed = server_command(s, CMD_HAND_OFF, 0);
    if (handed.status != RESULT_OK || !handed.has_code || handed.code != 0 || handed.noutputs)
        return handed; /* the routine did not hand the call off: report why */
    static struct later_end later; /* one request at a time: the adapter is sequential */
    memset(&later, 0, sizeof later);
    later.call = s->server;
    later.command = command;
    later.argument = argument;
    fprintf(stderr, "callgate-wine-adapter: the manager routine returned without ending the "
                    "call; another thread calls %s\n",
            command == CMD_COMPLETE ? "RpcAsyncCompleteCall" : "RpcAsyncAbortCall");
    HANDLE t = CreateThread(NULL, 0, later_main, &later, 0, NULL);
    if (!t)
        return result_error("cannot start a thread");
    if (WaitForSingleObject(t, COMMAND_MS + LATER_MS) != WAIT_OBJECT_0) {
        snprintf(message_buf, sizeof message_buf, "the later %s did not return within %d ms",
                 command == CMD_COMPLETE ? "RpcAsyncCompleteCall" : "RpcAsyncAbortCall",
                 COMMAND_MS);
        return result_error(message_buf);
    }
    CloseHandle(t);
    if (later.guard.exception) {
        /* The runtime raised: the call is not the handle's any more, whatever it holds. */
        InterlockedExchange(&later.call->held, 0);
        return raised((DWORD)later.guard.exception);
    }
    if (later.status == RPC_S_OK || command == CMD_COMPLETE)
        InterlockedExchange(&later.call->held, 0); /* destroyed (RPC-SRV-02, -COMPLETE-06) */
    return result_code(later.status);
}
