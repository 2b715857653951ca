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
 * keep the protocol code. The JSON code is deliberately small: enough for the messages of the
 * protocol, no external library.
 *
 * Requests are carried out one at a time on the main thread, in the order they arrive; the
 * test server's threads run beside it. callgate sends one request at a time per case, so that
 * is enough here. An adapter that wants to serve several requests at once answers each on a
 * thread of its own and writes each response line whole under a lock (see write_line).
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#define PROTOCOL_VERSION 1
#define IMPLEMENTATION "callgate C example adapter"
#define VERSION "1.0"

/* Limits: the longest line read (longer ones are skipped and reported on stderr), the values one
 * message may hold, slots per session, sessions open at once. */
#define LINE_MAX_BYTES (1 << 20)
#define MAX_NODES 2048
#define MAX_DEPTH 32
#define OUT_BYTES 65536
#define MAX_SLOTS 64
#define MAX_SESSIONS 256
#define NAME_BYTES 65

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
/* JSON: a parser into a flat array of nodes, and a writer into a fixed buffer.             */
/* ======================================================================================== */

enum jtype { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ };

struct jnode {
    enum jtype type;
    const char *key;   /* the member name, when this value is a member of an object */
    long long num;     /* J_BOOL (0 or 1) and J_INT */
    const char *str;   /* J_STR, decoded, NUL-terminated */
    int child;         /* first member or element, -1 if none */
    int next;          /* next member or element of the parent, -1 if none */
};

struct jdoc {
    struct jnode node[MAX_NODES];
    int count;
    char text[LINE_MAX_BYTES + 1]; /* decoded strings; never longer than the line itself */
    size_t used;
    const char *p;
    const char *error;
};

static int jnew(struct jdoc *d, enum jtype type)
{
    if (d->count >= MAX_NODES) {
        d->error = "too many values in one message";
        return -1;
    }
    struct jnode *n = &d->node[d->count];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->child = -1;
    n->next = -1;
    return d->count++;
}

static void jskip(struct jdoc *d)
{
    while (*d->p == ' ' || *d->p == '\t' || *d->p == '\r' || *d->p == '\n')
        d->p++;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* A string at d->p (which points at its opening quote), decoded into d->text. */
static const char *jstring(struct jdoc *d)
{
    char *start = d->text + d->used, *o = start;
    d->p++;
    for (;;) {
        unsigned char c = (unsigned char)*d->p;
        if (c == '"') {
            d->p++;
            break;
        }
        if (c == '\0') {
            d->error = "unterminated string";
            return NULL;
        }
        if (c < 0x20) {
            d->error = "control character in a string";
            return NULL;
        }
        if (c != '\\') {
            *o++ = (char)c;
            d->p++;
            continue;
        }
        d->p++;
        switch (*d->p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, low;
            if (hex4(d->p + 1, &cp) < 0) {
                d->error = "bad \\u escape";
                return NULL;
            }
            d->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                if (d->p[1] != '\\' || d->p[2] != 'u' || hex4(d->p + 3, &low) < 0
                    || low < 0xDC00 || low > 0xDFFF) {
                    d->error = "lone surrogate in \\u escape";
                    return NULL;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                d->p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                d->error = "lone surrogate in \\u escape";
                return NULL;
            }
            if (cp == 0) {
                d->error = "NUL in a string";
                return NULL;
            }
            o = put_utf8(o, cp);
            break;
        }
        default:
            d->error = "bad escape in a string";
            return NULL;
        }
        d->p++;
    }
    *o++ = '\0';
    d->used += (size_t)(o - start);
    return start;
}

static int jvalue(struct jdoc *d, int depth);

/* The members of an object or the elements of an array, after its opening bracket. */
static int jcontainer(struct jdoc *d, int self, char close, int depth)
{
    int last = -1;
    jskip(d);
    if (*d->p == close) {
        d->p++;
        return self;
    }
    for (;;) {
        const char *key = NULL;
        jskip(d);
        if (close == '}') {
            if (*d->p != '"') {
                d->error = "expected a member name";
                return -1;
            }
            if (!(key = jstring(d)))
                return -1;
            jskip(d);
            if (*d->p != ':') {
                d->error = "expected ':'";
                return -1;
            }
            d->p++;
        }
        int v = jvalue(d, depth + 1);
        if (v < 0)
            return -1;
        d->node[v].key = key;
        if (last < 0) d->node[self].child = v;
        else d->node[last].next = v;
        last = v;
        jskip(d);
        if (*d->p == ',') {
            d->p++;
            continue;
        }
        if (*d->p == close) {
            d->p++;
            return self;
        }
        d->error = close == '}' ? "expected ',' or '}'" : "expected ',' or ']'";
        return -1;
    }
}

static int jvalue(struct jdoc *d, int depth)
{
    if (depth > MAX_DEPTH) {
        d->error = "nested too deeply";
        return -1;
    }
    jskip(d);
    char c = *d->p;
    int n;
    if (c == '{' || c == '[') {
        if ((n = jnew(d, c == '{' ? J_OBJ : J_ARR)) < 0)
            return -1;
        d->p++;
        return jcontainer(d, n, c == '{' ? '}' : ']', depth);
    }
    if (c == '"') {
        if ((n = jnew(d, J_STR)) < 0)
            return -1;
        return (d->node[n].str = jstring(d)) ? n : -1;
    }
    if (strncmp(d->p, "true", 4) == 0 || strncmp(d->p, "false", 5) == 0) {
        if ((n = jnew(d, J_BOOL)) < 0)
            return -1;
        d->node[n].num = c == 't';
        d->p += c == 't' ? 4 : 5;
        return n;
    }
    if (strncmp(d->p, "null", 4) == 0) {
        d->p += 4;
        return jnew(d, J_NULL);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        int negative = c == '-';
        unsigned long long v = 0;
        if (negative)
            d->p++;
        if (*d->p < '0' || *d->p > '9') {
            d->error = "bad number";
            return -1;
        }
        while (*d->p >= '0' && *d->p <= '9') {
            if (v > (unsigned long long)INT64_MAX / 10) {
                d->error = "number out of range";
                return -1;
            }
            v = v * 10 + (unsigned long long)(*d->p++ - '0');
        }
        if (*d->p == '.' || *d->p == 'e' || *d->p == 'E') {
            d->error = "only integers are used by this protocol";
            return -1;
        }
        if (v > (unsigned long long)INT64_MAX) {
            d->error = "number out of range";
            return -1;
        }
        if ((n = jnew(d, J_INT)) < 0)
            return -1;
        d->node[n].num = negative ? -(long long)v : (long long)v;
        return n;
    }
    d->error = "unexpected character";
    return -1;
}

/* Parse one line; the root node's index, or -1 with d->error set. */
static int jparse(struct jdoc *d, const char *line)
{
    d->count = 0;
    d->used = 0;
    d->error = NULL;
    d->p = line;
    int root = jvalue(d, 0);
    if (root < 0)
        return -1;
    jskip(d);
    if (*d->p) {
        d->error = "text after the value";
        return -1;
    }
    return root;
}

static int jget(const struct jdoc *d, int obj, const char *key)
{
    if (obj < 0 || d->node[obj].type != J_OBJ)
        return -1;
    for (int i = d->node[obj].child; i >= 0; i = d->node[i].next)
        if (strcmp(d->node[i].key, key) == 0)
            return i;
    return -1;
}

static const char *jget_str(const struct jdoc *d, int obj, const char *key)
{
    int i = jget(d, obj, key);
    return i >= 0 && d->node[i].type == J_STR ? d->node[i].str : NULL;
}

/* An integer member, or `fallback` if it is missing or not an integer. */
static long long jget_int(const struct jdoc *d, int obj, const char *key, long long fallback)
{
    int i = jget(d, obj, key);
    return i >= 0 && d->node[i].type == J_INT ? d->node[i].num : fallback;
}

static int jget_bool(const struct jdoc *d, int obj, const char *key, int fallback)
{
    int i = jget(d, obj, key);
    return i >= 0 && d->node[i].type == J_BOOL ? (int)d->node[i].num : fallback;
}

struct jout {
    char buf[OUT_BYTES];
    size_t len;
    int overflow;
};

static void out_raw(struct jout *o, const char *s)
{
    size_t n = strlen(s);
    if (o->len + n + 2 > sizeof o->buf) { /* keep room for the newline */
        o->overflow = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void out_str(struct jout *o, const char *s)
{
    char esc[8];
    out_raw(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') out_raw(o, "\\\"");
        else if (c == '\\') out_raw(o, "\\\\");
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            out_raw(o, esc);
        } else {
            esc[0] = (char)c;
            esc[1] = '\0';
            out_raw(o, esc);
        }
    }
    out_raw(o, "\"");
}

static void out_int(struct jout *o, long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    out_raw(o, num);
}

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* One whole line on stdout, flushed at once: the harness waits for it. */
static void write_line(struct jout *o)
{
    if (o->overflow) {
        fprintf(stderr, "callgate-c-adapter: a message did not fit in %d bytes; dropped\n",
                OUT_BYTES);
        return;
    }
    o->buf[o->len++] = '\n';
    pthread_mutex_lock(&write_lock);
    fwrite(o->buf, 1, o->len, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&write_lock);
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
 * sees it signalled. On timeout: RPC_S_CALLPENDING (pinned: wait_timeout_code). */
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

struct slot {
    char name[NAME_BYTES];
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
/* Sessions and requests.                                                                   */
/* ======================================================================================== */

struct session {
    long long id;
    int nslots;
    struct slot slots[MAX_SLOTS];
};

static struct session *sessions[MAX_SESSIONS];

enum status { ST_OK, ST_NOT_APPLICABLE, ST_ERROR };

struct result {
    enum status status;
    int has_code;
    uint32_t code;
    int not_a_status; /* the value is a count, not an HRESULT: it gets no name */
    const char *message;
    int noutputs;
    struct {
        const char *name;
        int is_bool;
        long long value;
    } outputs[4];
};

static struct result ok(void)
{
    struct result r;
    memset(&r, 0, sizeof r);
    r.status = ST_OK;
    return r;
}

static struct result code(uint32_t value)
{
    struct result r = ok();
    r.has_code = 1;
    r.code = value;
    return r;
}

static struct result error(const char *message)
{
    struct result r = ok();
    r.status = ST_ERROR;
    r.message = message;
    return r;
}
static struct result not_applicable(const char *message)
{
    struct result r = error(message);
    r.status = ST_NOT_APPLICABLE;
    return r;
}
static void output(struct result *r, const char *name, int is_bool, long long value)
{
    r->outputs[r->noutputs].name = name;
    r->outputs[r->noutputs].is_bool = is_bool;
    r->outputs[r->noutputs].value = value;
    r->noutputs++;
}

static struct session *find_session(long long id)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i] && sessions[i]->id == id)
            return sessions[i];
    return NULL;
}

static void write_event(long long session, const char *kind, const char *slot, const char *message)
{
    struct jout *o = calloc(1, sizeof *o);
    if (!o)
        return;
    out_raw(o, "{\"type\":\"event\",\"session\":");
    out_int(o, session);
    out_raw(o, ",\"kind\":");
    out_str(o, kind);
    out_raw(o, ",\"slot\":");
    out_str(o, slot);
    out_raw(o, ",\"message\":");
    out_str(o, message);
    out_raw(o, "}");
    write_line(o);
    free(o);
}

static int one_of(const char *op, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(op, *names) == 0)
            return 1;
    return 0;
}

static struct result event_request(struct slot *s, const char *op, const struct jdoc *d, int args,
                                   long long wait_ms)
{
    static const char *const ops[] = {"CoCreateInstance", "Signal", "Reset", "Wait", NULL};
    if (!one_of(op, ops))
        return not_applicable("this adapter implements CoCreateInstance, Signal, Reset and Wait "
                              "only");
    if (strcmp(op, "CoCreateInstance") == 0) {
        const char *clsid = jget_str(d, args, "clsid");
        if (!clsid)
            return error("CoCreateInstance needs the string argument clsid");
        if (s->created)
            return error("this slot already holds an event");
        int manual = strcmp(clsid, "ManualResetEvent") == 0;
        if (!manual && strcmp(clsid, "StdEvent") != 0)
            return not_applicable("unknown clsid");
        if (event_init(&s->event, manual) < 0)
            return code(E_OUTOFMEMORY);
        s->created = 1;
        return code(S_OK);
    }
    if (!s->created)
        return code(E_UNEXPECTED); /* never asked: the model does not offer it */
    if (strcmp(op, "Signal") == 0)
        return code(event_signal(&s->event));
    if (strcmp(op, "Reset") == 0)
        return code(event_reset(&s->event));
    const char *timeout = jget_str(d, args, "timeout"); /* Wait */
    if (!timeout)
        return error("Wait needs the string argument timeout");
    long long ms = strcmp(timeout, "zero") == 0 ? 0 : strcmp(timeout, "infinite") == 0 ? -1 : wait_ms;
    return code(event_wait(&s->event, ms));
}

static const char *const COM_OPS[] = {
    "QueryInterface", "CreateCall", "Begin_", "Wait", "Finish_", "Release", "sync_call",
    "server_signal", "server_signal_late", NULL,
};

static struct result com_request(struct session *session, struct slot *s, const char *op,
                                 const struct jdoc *d, int args, long long wait_ms)
{
    if (!one_of(op, COM_OPS))
        return not_applicable("this adapter implements no cancellation, STA probe or "
                              "impersonation before Signal");
    if (strcmp(op, "QueryInterface") == 0) {
        const char *iid = jget_str(d, args, "iid");
        if (!iid)
            return error("QueryInterface needs the string argument iid");
        if (strcmp(iid, "ICallFactory") == 0) /* asked of the server object */
            return code(s->factory ? S_OK : E_NOINTERFACE);
        if (s->phase != PH_IDLE)
            return code(E_UNEXPECTED);
        if (strcmp(iid, "ISynchronize") == 0)
            return code(S_OK);
        /* The call object is the server's own, in the same apartment: no ICancelMethodCalls
         * and no IClientSecurity (pinned: call_object_origin = same_apartment). */
        return code(E_NOINTERFACE);
    }
    if (strcmp(op, "CreateCall") == 0) {
        const char *riid = jget_str(d, args, "riid");
        if (!riid)
            return error("CreateCall needs the string argument riid");
        if (!s->factory || s->phase != PH_NONE)
            return code(E_UNEXPECTED);
        if (strcmp(riid, "async") != 0)
            return code(E_NOINTERFACE); /* not an asynchronous interface (COM-CF-03) */
        if (event_init(&s->done, 1) < 0)
            return code(E_OUTOFMEMORY);
        s->phase = PH_IDLE;
        return code(S_OK);
    }
    if (strcmp(op, "sync_call") == 0) {
        struct result r = code(S_OK);
        output(&r, "out", 0, jget_int(d, args, "out", 0));
        return r;
    }
    if (strcmp(op, "server_signal") == 0) {
        if (!s->server)
            return code(E_UNEXPECTED); /* no held call: never asked */
        int then_impersonate = jget_bool(d, args, "then_impersonate", 0);
        uint32_t impersonate = server_finish(s->server, CMD_SIGNAL, jget_int(d, args, "out", 0));
        s->server = NULL;
        struct result r = code(S_OK);
        if (then_impersonate)
            output(&r, "impersonate", 0, impersonate);
        return r;
    }
    if (strcmp(op, "server_signal_late") == 0) {
        if (!s->orphan)
            return code(E_UNEXPECTED);
        server_finish(s->orphan, CMD_SIGNAL, 0);
        s->orphan = NULL;
        write_event(session->id, "log", s->name, "late Signal of a released call; nobody waits");
        return code(S_OK);
    }
    if (s->phase != PH_IDLE)
        return code(E_UNEXPECTED); /* no call object: the model never asks */
    if (strcmp(op, "Begin_") == 0) {
        if (s->in_flight) /* a call is in flight (pinned: begin_pending_code) */
            return code(RPC_S_CALLPENDING);
        event_reset(&s->done);
        if (!(s->server = server_start(s)))
            return code(E_OUTOFMEMORY);
        s->in_flight = 1;
        return code(S_OK);
    }
    if (strcmp(op, "Wait") == 0) {
        const char *timeout = jget_str(d, args, "timeout");
        if (!timeout)
            return error("Wait needs the string argument timeout");
        long long ms = strcmp(timeout, "zero") == 0 ? 0 : strcmp(timeout, "infinite") == 0 ? -1 : wait_ms;
        return code(event_wait(&s->done, ms));
    }
    if (strcmp(op, "Finish_") == 0) {
        if (!s->in_flight)
            return code(RPC_E_CALL_COMPLETE); /* no call in progress (COM-FIN-02) */
        event_wait(&s->done, -1);             /* Finish_ blocks until the call is done */
        s->in_flight = 0;
        struct result r = code(S_OK);
        output(&r, "out", 0, s->out_value);
        return r;
    }
    { /* Release */
        if (s->server) { /* the server still holds the call: it is abandoned (COM-REL-01) */
            s->orphan = s->server;
            s->server = NULL;
        }
        s->in_flight = 0;
        s->phase = PH_RELEASED;
        struct result r = code(0); /* IUnknown::Release returns the references left */
        r.not_a_status = 1;
        return r;
    }
}

static void session_free(struct session *session)
{
    for (int i = 0; i < session->nslots; i++) {
        struct slot *s = &session->slots[i];
        /* Let every held server call go, then free what the slot holds. */
        if (s->server)
            server_finish(s->server, CMD_LET_GO, 0);
        if (s->orphan)
            server_finish(s->orphan, CMD_LET_GO, 0);
        if (s->machine == M_EVENT && s->created)
            event_destroy(&s->event);
        if (s->machine == M_COM_CALL && s->phase != PH_NONE)
            event_destroy(&s->done);
    }
    free(session);
}

static struct result open_session(const struct jdoc *d, int root, long long id)
{
    int slots = jget(d, root, "slots");
    if (slots < 0 || d->node[slots].type != J_ARR)
        return error("open needs an array of slots");
    if (find_session(id))
        return error("this session is already open");
    int free_index = -1;
    for (int i = 0; i < MAX_SESSIONS && free_index < 0; i++)
        if (!sessions[i])
            free_index = i;
    if (free_index < 0)
        return error("too many sessions open at once");
    struct session *session = calloc(1, sizeof *session);
    if (!session)
        return error("out of memory");
    session->id = id;
    for (int i = d->node[slots].child; i >= 0; i = d->node[i].next) {
        const char *name = jget_str(d, i, "name"), *machine = jget_str(d, i, "machine");
        if (!name || !machine || strlen(name) >= NAME_BYTES) {
            session_free(session);
            return error("each slot needs a name (up to 64 characters) and a machine");
        }
        if (session->nslots == MAX_SLOTS) {
            session_free(session);
            return error("too many slots in one session");
        }
        struct slot *s = &session->slots[session->nslots];
        snprintf(s->name, sizeof s->name, "%s", name);
        if (strcmp(machine, "event") == 0) {
            s->machine = M_EVENT;
        } else if (strcmp(machine, "com_call") == 0) {
            s->machine = M_COM_CALL;
            s->factory = jget_bool(d, jget(d, i, "config"), "factory", 1);
            if (!jget_bool(d, jget(d, i, "config"), "cancellable", 1)) {
                session_free(session);
                return not_applicable("this adapter has no cancellation to disable");
            }
        } else {
            session_free(session);
            return not_applicable("this adapter implements the event and com_call machines only");
        }
        session->nslots++;
    }
    sessions[free_index] = session;
    return ok();
}

static struct result close_session(long long id)
{
    for (int i = 0; i < MAX_SESSIONS; i++) {
        if (sessions[i] && sessions[i]->id == id) {
            session_free(sessions[i]);
            sessions[i] = NULL;
            return ok();
        }
    }
    return error("no open session with this id");
}

static struct result perform(const struct jdoc *d, int root)
{
    struct session *session = find_session(jget_int(d, root, "session", -1));
    const char *slot_name = jget_str(d, root, "slot"), *op = jget_str(d, root, "op");
    int args = jget(d, root, "args");
    long long wait_ms = jget_int(d, root, "wait_ms", 0);
    if (!session)
        return error("no open session with this id");
    if (!slot_name || !op || args < 0 || d->node[args].type != J_OBJ)
        return error("a request needs slot, op and args");
    for (int i = 0; i < session->nslots; i++) {
        struct slot *s = &session->slots[i];
        if (strcmp(s->name, slot_name) != 0)
            continue;
        if (s->machine == M_EVENT)
            return event_request(s, op, d, args, wait_ms);
        return com_request(session, s, op, d, args, wait_ms);
    }
    return error("no slot of this name in the session");
}

static void write_handshake(void)
{
    static struct jout o;
    o.len = 0;
    out_raw(&o, "{\"type\":\"handshake\",\"protocol\":1,");
    out_raw(&o, "\"implementation\":\"" IMPLEMENTATION "\",\"version\":\"" VERSION "\",");
    /* Only what is implemented above: cases that need anything else are not applicable. */
    out_raw(&o, "\"features\":[\"com.call\",\"com.object_without_factory\",\"sync.event\","
                "\"sync.manual_reset_event\",\"sync.std_event\"],");
    /* The variation points this implementation touches, and its choice for each. */
    out_raw(&o, "\"pins\":{\"wait_timeout_code\":\"RPC_S_CALLPENDING\","
                "\"new_event_state\":\"nonsignaled\","
                "\"begin_pending_code\":\"RPC_S_CALLPENDING\","
                "\"call_object_origin\":\"same_apartment\"},");
    out_raw(&o, "\"notes\":\"POSIX threads; no cancellation, STA, impersonation, containers or "
                "RPC\"}");
    write_line(&o);
}

static void write_response(long long id, const struct result *r)
{
    static struct jout o;
    o.len = 0;
    o.overflow = 0;
    out_raw(&o, "{\"type\":\"response\",\"id\":");
    out_int(&o, id);
    if (r->status == ST_OK) {
        out_raw(&o, ",\"status\":\"ok\"");
        if (r->has_code) {
            out_raw(&o, ",\"code\":");
            out_int(&o, (long long)r->code); /* unsigned 32-bit, in decimal */
            const char *name = r->not_a_status ? NULL : code_name(r->code);
            if (name) {
                out_raw(&o, ",\"name\":");
                out_str(&o, name);
            }
        }
        if (r->noutputs) {
            out_raw(&o, ",\"outputs\":{");
            for (int i = 0; i < r->noutputs; i++) {
                if (i)
                    out_raw(&o, ",");
                out_str(&o, r->outputs[i].name);
                out_raw(&o, ":");
                if (r->outputs[i].is_bool)
                    out_raw(&o, r->outputs[i].value ? "true" : "false");
                else
                    out_int(&o, r->outputs[i].value);
            }
            out_raw(&o, "}");
        }
    } else {
        out_raw(&o, r->status == ST_ERROR ? ",\"status\":\"error\"" : ",\"status\":\"not_applicable\"");
        out_raw(&o, ",\"message\":");
        out_str(&o, r->message);
    }
    out_raw(&o, "}");
    write_line(&o);
}

/* Read one line into buf (without its newline). 0: a line; 1: a line longer than the buffer,
 * skipped; -1: end of input. */
static int read_line(char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    int c, overlong = 0;
    while ((c = getchar()) != EOF && c != '\n') {
        if (n + 1 < cap)
            buf[n++] = (char)c;
        else
            overlong = 1;
    }
    if (c == EOF && n == 0 && !overlong)
        return -1;
    buf[n] = '\0';
    *len = n;
    return overlong;
}

static struct jdoc doc;
static char line[LINE_MAX_BYTES + 1];

int main(void)
{
#ifdef _WIN32
    /* Lines must end in \n, not \r\n. */
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stdin), _O_BINARY);
#endif
    size_t len;
    int status;
    while ((status = read_line(line, sizeof line, &len)) >= 0) {
        if (status == 1) {
            fprintf(stderr, "callgate-c-adapter: skipped a line longer than %d bytes\n",
                    LINE_MAX_BYTES);
            continue;
        }
        if (len == 0)
            continue;
        int root = jparse(&doc, line);
        const char *type = root >= 0 ? jget_str(&doc, root, "type") : NULL;
        long long id = root >= 0 ? jget_int(&doc, root, "id", -1) : -1;
        if (!type) {
            fprintf(stderr, "callgate-c-adapter: ignored a line that is not a message (%s)\n",
                    doc.error ? doc.error : "no type");
            continue;
        }
        if (strcmp(type, "hello") == 0) {
            if (jget_int(&doc, root, "protocol", 0) != PROTOCOL_VERSION)
                fprintf(stderr, "callgate-c-adapter: the harness speaks another protocol "
                                "version; answering with version %d\n", PROTOCOL_VERSION);
            write_handshake();
            continue;
        }
        if (strcmp(type, "shutdown") == 0)
            break;
        struct result r;
        if (id < 1)
            r = error("the message has no id");
        else if (strcmp(type, "open") == 0)
            r = open_session(&doc, root, jget_int(&doc, root, "session", -1));
        else if (strcmp(type, "close") == 0)
            r = close_session(jget_int(&doc, root, "session", -1));
        else if (strcmp(type, "request") == 0)
            r = perform(&doc, root);
        else
            r = error("unknown message type");
        if (id < 1) {
            fprintf(stderr, "callgate-c-adapter: ignored a %s message without an id\n", type);
            continue;
        }
        write_response(id, &r);
    }
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i])
            session_free(sessions[i]);
    return 0;
}
