/*
 * callgate_adapter.c: an example callgate adapter in C, speaking the JSON-lines protocol
 * (docs/adapter-protocol.md, protocol version 1) on stdin and stdout.
 *
 * It implements, with POSIX threads, two of the machines callgate models:
 *
 *   event     a system synchronization object in the style of ISynchronize:
 *             CLSID_ManualResetEvent and CLSID_StdEvent (auto-reset), Signal / Reset /
 *             Wait(timeout); a Wait that times out returns RPC_S_CALLPENDING (0x80010115).
 *   com_call  a COM-style asynchronous call object: a server object with or without
 *             ICallFactory, CreateCall, Begin_ / Wait / Finish_ / Release, and a test server
 *             thread that holds each Begin_ until the harness says server_signal.
 *
 * It does not implement cancellation (ICancelMethodCalls), STA probing, impersonation before
 * Signal, ISynchronizeHandle, containers or RPC, and says so: the handshake lists only the
 * features below, so callgate reports the cases that need the others "not applicable".
 *
 * To adapt it to a real implementation, replace the bodies of the functions in the sections
 * "event" and "com_call" with calls into yours (CoCreateInstance, ISynchronize::Wait, ...) and
 * keep the protocol code. The JSON-lines layer (reading messages, writing lines and responses,
 * the message loop) is callgate_jsonl.h beside this file: deliberately small, enough for the
 * messages of the protocol, no external library.
 *
 * Requests are carried out one at a time on the main thread, in the order they arrive; the
 * test server's threads run beside it. That is enough for every sequential case, and the
 * handshake says so ("concurrent":false), so callgate reports its parallel cases (races
 * between requests in flight together) not applicable rather than passing them untried. An
 * adapter that serves several requests at once answers each on a thread of its own, declares
 * "concurrent":true, and gets its races run; jout_line writes each line whole whichever thread
 * calls it.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The JSON-lines layer: reading messages, writing lines, responses and the message loop. */
#define CALLGATE_JSONL_PROGRAM "callgate-c-adapter"
#define CALLGATE_JSONL_IMPLEMENTATION
#include "callgate_jsonl.h"

#define IMPLEMENTATION "callgate C example adapter"
#define VERSION "1.0"

/* Codes, as unsigned 32-bit numbers: that is how they travel. */
#define S_OK 0x00000000u
#define E_NOINTERFACE 0x80004002u
#define E_UNEXPECTED 0x8000FFFFu
#define E_OUTOFMEMORY 0x8007000Eu
#define RPC_S_CALLPENDING 0x80010115u
#define RPC_E_CALL_COMPLETE 0x80010117u

static const char *code_name(uint32_t value)
{
    switch (value) {
    case S_OK: return "S_OK";
    case E_NOINTERFACE: return "E_NOINTERFACE";
    case E_UNEXPECTED: return "E_UNEXPECTED";
    case E_OUTOFMEMORY: return "E_OUTOFMEMORY";
    case RPC_S_CALLPENDING: return "RPC_S_CALLPENDING";
    case RPC_E_CALL_COMPLETE: return "RPC_E_CALL_COMPLETE";
    default: return NULL;
    }
}

/* ======================================================================================== */
/* event: a manual-reset or auto-reset event, as ISynchronize sees it.                      */
/* ======================================================================================== */

struct event {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int signaled;
    int manual_reset;
};

static int event_init(struct event *e, int manual_reset)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr))
        return -1;
    /* Timeouts are measured on the monotonic clock, so a clock change cannot stretch a Wait. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&e->changed, &attr);
    pthread_condattr_destroy(&attr);
    if (rc)
        return -1;
    pthread_mutex_init(&e->lock, NULL);
    e->signaled = 0; /* new events start non-signalled (pinned: new_event_state) */
    e->manual_reset = manual_reset;
    return 0;
}

static void event_destroy(struct event *e)
{
    pthread_cond_destroy(&e->changed);
    pthread_mutex_destroy(&e->lock);
}

static uint32_t event_signal(struct event *e) /* ISynchronize::Signal */
{
    pthread_mutex_lock(&e->lock);
    e->signaled = 1;
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->lock);
    return S_OK;
}

static uint32_t event_reset(struct event *e) /* ISynchronize::Reset */
{
    pthread_mutex_lock(&e->lock);
    e->signaled = 0;
    pthread_mutex_unlock(&e->lock);
    return S_OK;
}

/* ISynchronize::Wait(0, ms); ms < 0 is INFINITE. An auto-reset event is reset by the Wait that
 * sees it signalled. On timeout: RPC_S_CALLPENDING (pinned: event_wait_timeout_code for the
 * event machine, call_wait_timeout_code for the call object's Wait). */
static uint32_t event_wait(struct event *e, long long ms)
{
    pthread_mutex_lock(&e->lock);
    if (ms < 0) {
        while (!e->signaled)
            pthread_cond_wait(&e->changed, &e->lock);
    } else if (!e->signaled && ms > 0) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)(ms / 1000);
        deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!e->signaled)
            if (pthread_cond_timedwait(&e->changed, &e->lock, &deadline) == ETIMEDOUT)
                break;
    }
    uint32_t hr = e->signaled ? S_OK : RPC_S_CALLPENDING;
    if (e->signaled && !e->manual_reset)
        e->signaled = 0;
    pthread_mutex_unlock(&e->lock);
    return hr;
}

/* ======================================================================================== */
/* com_call: a call object, its server object, and the held test server thread.            */
/* ======================================================================================== */

enum phase { PH_NONE, PH_IDLE, PH_RELEASED };
enum command { CMD_NONE, CMD_SIGNAL, CMD_LET_GO };

struct slot;

/* The test server's processing of one Begin_: a thread that waits for the harness's command. */
struct server_call {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    enum command command;
    long long out;
    int done;
    uint32_t impersonate;
    struct slot *slot;
};

enum machine { M_EVENT, M_COM_CALL };

/* A slot's state; callgate_jsonl.h keeps the slots of each session, by name. */
struct slot {
    enum machine machine;
    /* event */
    int created;
    struct event event;
    /* com_call */
    int factory;                 /* the server object implements ICallFactory */
    enum phase phase;            /* NONE before CreateCall; IDLE while the object lives */
    int in_flight;               /* Begin_ accepted, Finish_ not yet returned */
    struct event done;           /* the call object's ISynchronize: the server signals it */
    long long out_value;         /* the [out] value the server signalled */
    struct server_call *server;  /* the held processing of the current call, if any */
    struct server_call *orphan;  /* held processing of a call the client released */
};

static void *server_main(void *arg)
{
    struct server_call *s = arg;
    pthread_mutex_lock(&s->lock);
    while (s->command == CMD_NONE)
        pthread_cond_wait(&s->changed, &s->lock);
    enum command command = s->command;
    pthread_mutex_unlock(&s->lock);
    if (command == CMD_SIGNAL) {
        /* The [out] value is written before Signal: Finish_ reads it after its Wait. */
        s->slot->out_value = s->out;
        event_signal(&s->slot->done);
        /* Once Signal has returned the call is complete, and the server can no longer
         * impersonate the client (COM-SRV-06): CoImpersonateClient fails. */
        s->impersonate = RPC_E_CALL_COMPLETE;
    }
    pthread_mutex_lock(&s->lock);
    s->done = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static struct server_call *server_start(struct slot *slot)
{
    struct server_call *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    s->slot = slot;
    if (pthread_create(&s->thread, NULL, server_main, s)) {
        pthread_cond_destroy(&s->changed);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    return s;
}

/* Give the held call its command, wait until the server thread has carried it out (so its
 * effects are visible when the harness gets its answer), and end the thread. */
static uint32_t server_finish(struct server_call *s, enum command command, long long out)
{
    pthread_mutex_lock(&s->lock);
    s->command = command;
    s->out = out;
    pthread_cond_broadcast(&s->changed);
    while (!s->done)
        pthread_cond_wait(&s->changed, &s->lock);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    uint32_t impersonate = s->impersonate;
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return impersonate;
}

/* ======================================================================================== */
/* Slots and requests.                                                                      */
/* ======================================================================================== */

static void write_event(long long session, const char *kind, const char *slot, const char *message)
{
    struct jout *o = calloc(1, sizeof *o);
    if (!o)
        return;
    jout_raw(o, "{\"type\":\"event\",\"session\":");
    jout_int(o, session);
    jout_raw(o, ",\"kind\":");
    jout_str(o, kind);
    jout_raw(o, ",\"slot\":");
    jout_str(o, slot);
    jout_raw(o, ",\"message\":");
    jout_str(o, message);
    jout_raw(o, "}");
    jout_line(o);
    free(o);
}

static int one_of(const char *op, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(op, *names) == 0)
            return 1;
    return 0;
}

/* Wait's argument timeout in ms for event_wait: "zero", "infinite" (-1), or "finite": as long as
 * the harness waits (wait_ms). */
static long long wait_timeout(const char *timeout, long long wait_ms)
{
    if (strcmp(timeout, "zero") == 0)
        return 0;
    if (strcmp(timeout, "infinite") == 0)
        return -1;
    return wait_ms;
}

static struct result event_request(struct slot *s, const struct jsonl_request *q)
{
    const char *op = q->op;
    static const char *const ops[] = {"CoCreateInstance", "Signal", "Reset", "Wait", NULL};
    if (!one_of(op, ops))
        return result_not_applicable("this adapter implements CoCreateInstance, Signal, Reset "
                                     "and Wait only");
    if (strcmp(op, "CoCreateInstance") == 0) {
        const char *clsid = jarg_str(q, "clsid");
        if (!clsid)
            return result_error("CoCreateInstance needs the string argument clsid");
        if (s->created)
            return result_error("this slot already holds an event");
        int manual = strcmp(clsid, "ManualResetEvent") == 0;
        if (!manual && strcmp(clsid, "StdEvent") != 0)
            return result_not_applicable("unknown clsid");
        if (event_init(&s->event, manual) < 0)
            return result_code(E_OUTOFMEMORY);
        s->created = 1;
        return result_code(S_OK);
    }
    if (!s->created)
        return result_code(E_UNEXPECTED); /* never asked: the model does not offer it */
    if (strcmp(op, "Signal") == 0)
        return result_code(event_signal(&s->event));
    if (strcmp(op, "Reset") == 0)
        return result_code(event_reset(&s->event));
    const char *timeout = jarg_str(q, "timeout"); /* Wait */
    if (!timeout)
        return result_error("Wait needs the string argument timeout");
    return result_code(event_wait(&s->event, wait_timeout(timeout, q->wait_ms)));
}

static const char *const COM_OPS[] = {
    "QueryInterface", "CreateCall", "Begin_", "Wait", "Finish_", "Release", "sync_call",
    "server_signal", "server_signal_late", NULL,
};

static struct result com_request(struct slot *s, const struct jsonl_request *q)
{
    const char *op = q->op;
    if (!one_of(op, COM_OPS))
        return result_not_applicable("this adapter implements no cancellation, STA probe or "
                                     "impersonation before Signal");
    if (strcmp(op, "QueryInterface") == 0) {
        const char *iid = jarg_str(q, "iid");
        if (!iid)
            return result_error("QueryInterface needs the string argument iid");
        if (strcmp(iid, "ICallFactory") == 0) /* asked of the server object */
            return result_code(s->factory ? S_OK : E_NOINTERFACE);
        if (s->phase != PH_IDLE)
            return result_code(E_UNEXPECTED);
        if (strcmp(iid, "ISynchronize") == 0 || strcmp(iid, "AsyncIFoo") == 0)
            return result_code(S_OK); /* AsyncIFoo: the asynchronous interface (COM-CF-07) */
        /* The call object is the server's own, in the same apartment: no ICancelMethodCalls
         * and no IClientSecurity (pinned: call_object_origin = same_apartment). */
        return result_code(E_NOINTERFACE);
    }
    if (strcmp(op, "CreateCall") == 0) {
        const char *riid = jarg_str(q, "riid");
        if (!riid)
            return result_error("CreateCall needs the string argument riid");
        if (!s->factory || s->phase != PH_NONE)
            return result_code(E_UNEXPECTED);
        if (strcmp(riid, "async") != 0)
            return result_code(E_NOINTERFACE); /* not an asynchronous interface (COM-CF-03) */
        if (event_init(&s->done, 1) < 0)
            return result_code(E_OUTOFMEMORY);
        s->phase = PH_IDLE;
        return result_code(S_OK);
    }
    if (strcmp(op, "sync_call") == 0) {
        struct result r = result_code(S_OK);
        output_int(&r, "out", jarg_int(q, "out", 0));
        return r;
    }
    if (strcmp(op, "server_signal") == 0) {
        if (!s->server)
            return result_code(E_UNEXPECTED); /* no held call: never asked */
        int then_impersonate = jarg_bool(q, "then_impersonate", 0);
        uint32_t impersonate = server_finish(s->server, CMD_SIGNAL, jarg_int(q, "out", 0));
        s->server = NULL;
        struct result r = result_code(S_OK);
        if (then_impersonate)
            output_int(&r, "impersonate", impersonate);
        return r;
    }
    if (strcmp(op, "server_signal_late") == 0) {
        if (!s->orphan)
            return result_code(E_UNEXPECTED);
        server_finish(s->orphan, CMD_SIGNAL, 0);
        s->orphan = NULL;
        write_event(q->session, "log", q->slot, "late Signal of a released call; nobody waits");
        return result_code(S_OK);
    }
    if (s->phase != PH_IDLE)
        return result_code(E_UNEXPECTED); /* no call object: the model never asks */
    if (strcmp(op, "Begin_") == 0) {
        if (s->in_flight) /* a call is in flight (pinned: begin_pending_code) */
            return result_code(RPC_S_CALLPENDING);
        event_reset(&s->done);
        if (!(s->server = server_start(s)))
            return result_code(E_OUTOFMEMORY);
        s->in_flight = 1;
        return result_code(S_OK);
    }
    if (strcmp(op, "Wait") == 0) {
        const char *timeout = jarg_str(q, "timeout");
        if (!timeout)
            return result_error("Wait needs the string argument timeout");
        return result_code(event_wait(&s->done, wait_timeout(timeout, q->wait_ms)));
    }
    if (strcmp(op, "Finish_") == 0) {
        if (!s->in_flight)
            return result_code(RPC_E_CALL_COMPLETE); /* no call in progress (COM-FIN-02) */
        event_wait(&s->done, -1);             /* Finish_ blocks until the call is done */
        s->in_flight = 0;
        struct result r = result_code(S_OK);
        output_int(&r, "out", s->out_value);
        return r;
    }
    { /* Release */
        if (s->server) { /* the server still holds the call: it is abandoned (COM-REL-01) */
            s->orphan = s->server;
            s->server = NULL;
        }
        s->in_flight = 0;
        s->phase = PH_RELEASED;
        return result_count(0); /* IUnknown::Release returns the references left */
    }
}

/* Make a slot for the open message: event or com_call, nothing else. */
static struct result open_slot(const char *machine, const struct jdoc *d, int config, void **slot)
{
    enum machine m;
    if (strcmp(machine, "event") == 0)
        m = M_EVENT;
    else if (strcmp(machine, "com_call") == 0)
        m = M_COM_CALL;
    else
        return result_not_applicable("this adapter implements the event and com_call machines "
                                     "only");
    if (m == M_COM_CALL && !jget_bool(d, config, "cancellable", 1))
        return result_not_applicable("this adapter has no cancellation to disable");
    struct slot *s = calloc(1, sizeof *s);
    if (!s)
        return result_error("out of memory");
    s->machine = m;
    s->factory = m == M_COM_CALL && jget_bool(d, config, "factory", 1);
    *slot = s;
    return result_ok();
}

static struct result perform(void *slot, const struct jsonl_request *q)
{
    struct slot *s = slot;
    return s->machine == M_EVENT ? event_request(s, q) : com_request(s, q);
}

/* At close: let every held server call go, then free what the slot holds. */
static void close_slot(void *slot)
{
    struct slot *s = slot;
    if (s->server)
        server_finish(s->server, CMD_LET_GO, 0);
    if (s->orphan)
        server_finish(s->orphan, CMD_LET_GO, 0);
    if (s->machine == M_EVENT && s->created)
        event_destroy(&s->event);
    if (s->machine == M_COM_CALL && s->phase != PH_NONE)
        event_destroy(&s->done);
    free(s);
}

static void write_handshake(void)
{
    static struct jout o;
    jout_reset(&o);
    jout_raw(&o, "{\"type\":\"handshake\",\"protocol\":");
    jout_int(&o, JSONL_PROTOCOL);
    jout_raw(&o, ",\"implementation\":\"" IMPLEMENTATION "\",\"version\":\"" VERSION "\",");
    /* Only what is implemented above: cases that need anything else are not applicable. */
    jout_raw(&o, "\"features\":[\"com.call\",\"com.object_without_factory\",\"sync.event\","
                 "\"sync.manual_reset_event\",\"sync.std_event\"],");
    /* The variation points this implementation touches, and its choice for each. */
    jout_raw(&o, "\"pins\":{\"call_wait_timeout_code\":\"RPC_S_CALLPENDING\","
                 "\"event_wait_timeout_code\":\"RPC_S_CALLPENDING\","
                 "\"call_object_event\":\"ManualResetEvent\","
                 "\"new_event_state\":\"nonsignaled\","
                 "\"begin_pending_code\":\"RPC_S_CALLPENDING\","
                 "\"call_object_origin\":\"same_apartment\"},");
    /* One request at a time (jsonl_serve's loop): parallel cases are not applicable. */
    jout_raw(&o, "\"concurrent\":false,");
    jout_raw(&o, "\"notes\":\"POSIX threads; no cancellation, STA, impersonation, containers or "
                 "RPC\"}");
    jout_line(&o);
}

int main(void)
{
    static const struct jsonl_adapter adapter = {
        .handshake = write_handshake,
        .open_slot = open_slot,
        .request = perform,
        .close_slot = close_slot,
        .code_name = code_name,
    };
    jsonl_serve(&adapter);
    jsonl_close_all(&adapter); /* every held server thread ends before the program does */
    return 0;
}
