/*
 * callgate_wine_cowait.c: the Wine adapter's `cowait` slots (DOMAIN.md section 2.11,
 * CoWaitForMultipleHandles). Included by callgate_wine_adapter.c (one translation unit), so it
 * uses that file's helpers (arg_str, timeout_ms, struct result).
 *
 * A slot owns two kernel events, made non-signalled when the slot opens: handle 0 a manual-reset
 * event, handle 1 an auto-reset event. The client thread is the adapter's request thread (the
 * main thread, in the MTA): CoWaitForMultipleHandles is called there, and queue_apc queues a user
 * APC that does nothing to it. Argument forms (model/tables/cowait.py):
 *
 *   valid                    cHandles 2, pHandles the two events, lpdwindex a valid DWORD
 *   null_index               lpdwindex NULL
 *   null_handles             pHandles NULL, cHandles 2
 *   zero_count               cHandles 0, pHandles valid
 *   null_handles_zero_count  pHandles NULL, cHandles 0
 *   bad_flags                dwFlags with 0x80000000 added (no COWAIT_FLAGS value has that bit)
 *
 * *lpdwindex is set to 0xFFFFFFFF before the call and reported as the output `index` whenever
 * lpdwindex is valid.
 *
 * bad_flags with an INFINITE timeout should fail at once (COM-CWMH-04), but an implementation
 * that ignores the undefined bit waits, and with no handle signalled never returns. So that call
 * is made on a helper thread, waited for the request's wait_ms plus 250 ms, and if it has not
 * returned it is reported as the adapter's encoding of a call that blocks (docs/wine.md):
 * WAIT_TIMEOUT (258) with the outputs `returned: false` and `waited_ms`. The slot is then left
 * as it is when it closes (its events stay open and the helper thread stays blocked on them), so
 * nothing else ever signals them. (callgate itself never sends this: it looks at an INFINITE
 * wait with a zero timeout first, and stops when that look fails.) An APC still queued when the slot closes is run then (an alertable
 * SleepEx(0)), so that it never reaches another slot's alertable wait.
 */

#define COWAIT_UNDEFINED_FLAG 0x80000000u

struct cowait_slot {
    HANDLE handles[2];
    volatile LONG apcs; /* queued and not yet run */
    int blocked;        /* a helper thread is still blocked in CoWaitForMultipleHandles */
};

struct cowait_call {
    DWORD flags, timeout, index;
    ULONG count;
    HANDLE *handles;
    HRESULT hr;
};

static DWORD WINAPI cowait_helper(void *arg)
{
    struct cowait_call *c = arg;
    c->hr = CoWaitForMultipleHandles(c->flags, c->timeout, c->count, c->handles, &c->index);
    return 0;
}

static void CALLBACK cowait_apc(ULONG_PTR arg)
{
    struct cowait_slot *w = (struct cowait_slot *)arg;
    InterlockedDecrement(&w->apcs);
}

static struct result cowait_open(struct cowait_slot **out)
{
    struct cowait_slot *w = calloc(1, sizeof *w);
    if (!w)
        return result_error("out of memory");
    w->handles[0] = CreateEventW(NULL, TRUE, FALSE, NULL);
    w->handles[1] = CreateEventW(NULL, FALSE, FALSE, NULL);
    if (!w->handles[0] || !w->handles[1]) {
        snprintf(message_buf, sizeof message_buf, "CreateEvent failed (%lu)",
                 (unsigned long)GetLastError());
        if (w->handles[0])
            CloseHandle(w->handles[0]);
        if (w->handles[1])
            CloseHandle(w->handles[1]);
        free(w);
        return result_error(message_buf);
    }
    *out = w;
    return result_ok();
}

static struct result cowait_wait(struct cowait_slot *w, const struct jsonl_request *q)
{
    const char *form = arg_str(q, "form"), *flag = arg_str(q, "flags");
    DWORD flags;
    if (strcmp(flag, "none") == 0)
        flags = 0;
    else if (strcmp(flag, "waitall") == 0)
        flags = COWAIT_WAITALL;
    else if (strcmp(flag, "alertable") == 0)
        flags = COWAIT_ALERTABLE;
    else
        return result_error("unknown flags (none, waitall, alertable)");
    ULONG count = 2;
    HANDLE *handles = w->handles;
    DWORD index = 0xFFFFFFFFu;
    DWORD *lpdwindex = &index;
    if (strcmp(form, "null_index") == 0)
        lpdwindex = NULL;
    else if (strcmp(form, "null_handles") == 0)
        handles = NULL;
    else if (strcmp(form, "zero_count") == 0)
        count = 0;
    else if (strcmp(form, "null_handles_zero_count") == 0) {
        handles = NULL;
        count = 0;
    } else if (strcmp(form, "bad_flags") == 0)
        flags |= COWAIT_UNDEFINED_FLAG;
    else if (strcmp(form, "valid") != 0)
        return result_error("unknown form");
    if (strcmp(form, "bad_flags") == 0 && timeout_ms(q) == INFINITE) {
        /* heap: the helper may outlive this request */
        struct cowait_call *c = calloc(1, sizeof *c);
        if (!c)
            return result_error("out of memory");
        *c = (struct cowait_call){flags, INFINITE, 0xFFFFFFFFu, count, handles, E_UNEXPECTED};
        HANDLE helper = CreateThread(NULL, 0, cowait_helper, c, 0, NULL);
        if (!helper) {
            free(c);
            return result_error("could not start a helper thread");
        }
        DWORD waited = (DWORD)(q->wait_ms > 0 ? q->wait_ms : 50) + 250;
        if (WaitForSingleObject(helper, waited) != WAIT_OBJECT_0) {
            CloseHandle(helper);
            w->blocked = 1; /* c stays allocated: the helper still uses it */
            struct result r = result_code(WAIT_TIMEOUT);
            output_bool(&r, "returned", 0);
            output_int(&r, "waited_ms", (long long)waited);
            return r;
        }
        CloseHandle(helper);
        struct result r = result_code((uint32_t)c->hr);
        output_int(&r, "index", (long long)c->index);
        free(c);
        return r;
    }
    HRESULT hr = CoWaitForMultipleHandles(flags, timeout_ms(q), count, handles, lpdwindex);
    struct result r = result_code((uint32_t)hr);
    if (lpdwindex)
        output_int(&r, "index", (long long)index);
    return r;
}

static struct result cowait_request(struct cowait_slot *w, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (strcmp(op, "CoWaitForMultipleHandles") == 0)
        return cowait_wait(w, q);
    if (strcmp(op, "set_handle") == 0 || strcmp(op, "reset_handle") == 0) {
        long long i = jarg_int(q, "index", -1);
        if (i < 0 || i > 1)
            return result_error("no such handle (index 0 or 1)");
        BOOL ok = op[0] == 's' ? SetEvent(w->handles[i]) : ResetEvent(w->handles[i]);
        return result_code(ok ? (uint32_t)S_OK : (uint32_t)E_UNEXPECTED);
    }
    if (strcmp(op, "queue_apc") == 0) {
        InterlockedIncrement(&w->apcs);
        if (!QueueUserAPC(cowait_apc, GetCurrentThread(), (ULONG_PTR)w)) {
            InterlockedDecrement(&w->apcs);
            return result_code((uint32_t)E_UNEXPECTED);
        }
        return result_code((uint32_t)S_OK);
    }
    return result_error("the cowait machine has no such operation in this adapter");
}

static void cowait_close(struct cowait_slot *w)
{
    for (int i = 0; i < 100 && w->apcs > 0; i++)
        SleepEx(0, TRUE); /* run the APCs still queued to this thread; they point at w */
    if (w->blocked)
        return; /* a helper thread still waits on the events: leave them, and w, as they are */
    CloseHandle(w->handles[0]);
    CloseHandle(w->handles[1]);
    if (w->apcs <= 0)
        free(w); /* else leak it: an APC that never ran still points at it */
}
