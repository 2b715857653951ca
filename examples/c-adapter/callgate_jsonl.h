/*
 * callgate_jsonl.h: the JSON-lines layer of a callgate adapter written in C, in one header. It
 * reads the harness's messages (docs/adapter-protocol.md, protocol version 1) from stdin, parses
 * each line into JSON values, keeps the open sessions and their slots, hands each request to the
 * adapter, and writes the answers to stdout as whole JSON lines. The adapter supplies what is its
 * own: the handshake, making and freeing a slot of each machine it implements, and carrying out
 * requests on a slot.
 *
 * Use: copy this file next to your adapter. In exactly one C file, before including it, say
 *
 *     #define CALLGATE_JSONL_PROGRAM "my-adapter"   (optional: the name on its stderr lines)
 *     #define CALLGATE_JSONL_IMPLEMENTATION
 *     #include "callgate_jsonl.h"
 *
 * and call jsonl_serve() from main. Other files include it without the definitions and get the
 * declarations only. callgate's own adapters use it so: examples/c-adapter/callgate_adapter.c
 * (POSIX threads, built with cc) and adapters/wine/callgate_wine_adapter.c (the Windows API,
 * built with mingw-w64 and run under Wine).
 *
 * The parts, each with its functions below:
 *
 *   reading JSON    jparse, jget, jget_str, jget_int, jget_bool: a line parsed into a flat array
 *                   of values (struct jdoc); only integers are numbers, as in the protocol.
 *   writing JSON    jout_reset, jout_raw, jout_str, jout_int, jout_line: a message built in a
 *                   fixed buffer (struct jout) and written as one line, flushed at once.
 *   responses       result_ok, result_code, result_count, result_error, result_not_applicable,
 *                   output_int, output_bool, output_text, write_response: what a request,
 *                   open or close answers (struct result), and its response line.
 *   the loop        jsonl_serve, jsonl_close_all: reads messages until shutdown or the end of
 *                   input, opens and closes sessions, and calls the functions of a struct
 *                   jsonl_adapter for each slot and request; jarg_str, jarg_int, jarg_bool
 *                   read a request's arguments.
 *
 * Portable C11 with the standard library only, no threads library. The buffers are static
 * (about 2.2 MB); each open session is allocated (about 5 KB). Whole lines are written under
 * the stdio lock of stdout: flockfile on POSIX (define _POSIX_C_SOURCE 200809L before any
 * #include, or compile with -std=gnu11), _lock_file on Windows. So several threads may write
 * lines at once; reading, the sessions, and a struct jdoc or struct jout are for one thread.
 */

#ifndef CALLGATE_JSONL_H
#define CALLGATE_JSONL_H

#include <stddef.h>
#include <stdint.h>

/* The protocol version this layer speaks (the handshake's "protocol"). */
#define JSONL_PROTOCOL 1

/* Limits. A longer line is skipped and reported on stderr, a message with more values or deeper
 * nesting is ignored with a diagnostic, and a longer answer is dropped with a diagnostic. */
#define JSONL_LINE_BYTES (1 << 20) /* the longest line read */
#define JSONL_MAX_VALUES 2048      /* values in one message */
#define JSONL_MAX_DEPTH 32         /* nesting of objects and arrays */
#define JSONL_OUT_BYTES 65536      /* the longest line written, with its newline */
#define JSONL_MAX_OUTPUTS 10       /* outputs in one response */
#define JSONL_MAX_SESSIONS 256     /* sessions open at once */
#define JSONL_MAX_SLOTS 64         /* slots in one session */
#define JSONL_NAME_BYTES 65        /* a slot's name, up to 64 bytes, with its NUL */

/* ---------------------------------------------------------------------------------------- */
/* Reading JSON                                                                             */
/* ---------------------------------------------------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ };

/* One value. A value is named by its index in jdoc.node; -1 names no value. The members of an
 * object, or the elements of an array, are a chain: for (i = node[v].child; i >= 0;
 * i = node[i].next). */
struct jnode {
    enum jtype type;
    const char *key;   /* the member name, when this value is a member of an object */
    long long num;     /* J_BOOL (0 or 1) and J_INT */
    const char *str;   /* J_STR, decoded (UTF-8, no NUL inside), NUL-terminated */
    int child;         /* first member or element, -1 if none */
    int next;          /* next member or element of the parent, -1 if none */
};

/* A parsed line. Its strings live in `text` until the next jparse into the same jdoc. It is
 * large (about 1.1 MB): make it static, not a local variable. */
struct jdoc {
    struct jnode node[JSONL_MAX_VALUES];
    int count;
    char text[JSONL_LINE_BYTES + 1]; /* decoded strings; never longer than the line itself */
    size_t used;
    const char *p;
    const char *error; /* why the last jparse failed */
};

/* Parse one line (without its newline): the index of the root value, or -1 with d->error set. */
int jparse(struct jdoc *d, const char *line);

/* The member `key` of the object `obj`: its index, or -1 if obj is not an object or has no such
 * member. The jget_* functions return the member's value, or a fallback when the member is
 * missing or of another type, so a caller can check once. */
int jget(const struct jdoc *d, int obj, const char *key);
const char *jget_str(const struct jdoc *d, int obj, const char *key); /* fallback: NULL */
long long jget_int(const struct jdoc *d, int obj, const char *key, long long fallback);
int jget_bool(const struct jdoc *d, int obj, const char *key, int fallback);

/* ---------------------------------------------------------------------------------------- */
/* Writing JSON                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* A line being written. Build it with jout_raw, jout_str and jout_int after jout_reset (or in a
 * zeroed struct), then write it with jout_line. What does not fit sets `overflow`, and jout_line
 * then drops the line with a diagnostic instead of writing half a message. */
struct jout {
    char buf[JSONL_OUT_BYTES];
    size_t len;
    int overflow;
};

void jout_reset(struct jout *o);
void jout_raw(struct jout *o, const char *json);  /* text that is JSON already, as it is */
void jout_str(struct jout *o, const char *text);  /* a JSON string: quoted and escaped */
void jout_int(struct jout *o, long long value);   /* a decimal integer */

/* Write the line and its newline to stdout in one piece and flush it: the harness waits for it.
 * Only protocol lines go to stdout; diagnostics go to stderr. */
void jout_line(struct jout *o);

/* ---------------------------------------------------------------------------------------- */
/* Responses                                                                                */
/* ---------------------------------------------------------------------------------------- */

enum result_status { RESULT_OK, RESULT_NOT_APPLICABLE, RESULT_ERROR };
enum output_kind { OUTPUT_INT, OUTPUT_BOOL, OUTPUT_TEXT };

/* The answer to one request, open or close. Every string in it (message, output names and text)
 * must still be there when the response is written: use literals or static buffers. */
struct result {
    enum result_status status;
    int has_code;
    uint32_t code;     /* unsigned 32-bit: an HRESULT or RPC_STATUS as it travels */
    int not_a_status;  /* the code is a count (Release, ...), not a status: it gets no name */
    const char *message;
    int noutputs;
    struct result_output {
        const char *name;
        enum output_kind kind;
        long long value;  /* OUTPUT_INT and OUTPUT_BOOL */
        const char *text; /* OUTPUT_TEXT */
    } outputs[JSONL_MAX_OUTPUTS];
};

struct result result_ok(void);                  /* "ok", nothing more (open, close) */
struct result result_code(uint32_t code);       /* "ok" with the code the call returned */
struct result result_count(uint32_t count);     /* "ok" with a number that is not a status */
struct result result_error(const char *message); /* the adapter could not carry it out */
/* The adapter does not implement what was asked: callgate reports the case not applicable. */
struct result result_not_applicable(const char *message);

/* Add an output (a value the operation gave besides its code) to r. */
void output_int(struct result *r, const char *name, long long value);
void output_bool(struct result *r, const char *name, int value);
void output_text(struct result *r, const char *name, const char *text);

/* Write the response line for message `id`. code_name gives a code's name (such as
 * "RPC_S_CALLPENDING"), or NULL to leave it out; code_name itself may be NULL. */
void write_response(long long id, const struct result *r, const char *(*code_name)(uint32_t));

/* ---------------------------------------------------------------------------------------- */
/* The loop                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* A request for an operation on a slot, as jsonl_serve hands it to the adapter. */
struct jsonl_request {
    long long session;    /* the session's id */
    const char *slot;     /* the slot's name */
    const char *op;       /* the operation, such as "Wait" or "RpcAsyncCompleteCall" */
    const struct jdoc *d; /* the message */
    int args;             /* its arguments: an object in d */
    long long wait_ms;    /* how long the harness waits for an operation that blocks, or 0 */
};

/* An argument of the request, or the fallback when it is missing or of another type. */
const char *jarg_str(const struct jsonl_request *q, const char *name); /* fallback: NULL */
long long jarg_int(const struct jsonl_request *q, const char *name, long long fallback);
int jarg_bool(const struct jsonl_request *q, const char *name, int fallback);

/* What the adapter does. A slot's state is the adapter's own (a struct of its choosing, passed
 * as void *); jsonl_serve keeps the sessions, the slots' names and their states. The functions
 * run on the thread that called jsonl_serve, one message at a time. */
struct jsonl_adapter {
    /* hello: write the handshake line (type, protocol, implementation, version, features,
     * pins, concurrent, notes) with jout_* and jout_line. jsonl_serve carries out one message
     * at a time, so an adapter built on it declares "concurrent":false. */
    void (*handshake)(void);
    /* open, for each slot of the session in order: make a slot of `machine` with the slot's
     * "config" object (config is its index in d, or -1 when there is none; jget_* give the
     * fallback then), store its state in *slot and answer result_ok(). Any other answer
     * (result_not_applicable for a machine or configuration not implemented, result_error)
     * is the answer to the open: the slots made so far are closed and the session stays shut. */
    struct result (*open_slot)(const char *machine, const struct jdoc *d, int config,
                               void **slot);
    /* request: carry out q->op on the slot. */
    struct result (*request)(void *slot, const struct jsonl_request *q);
    /* close, for each slot of the session in order: let everything the slot holds go and free
     * its state. */
    void (*close_slot)(void *slot);
    /* The name of a code for the response's "name", or NULL; may be NULL itself. */
    const char *(*code_name)(uint32_t code);
};

/* Serve the harness: read lines from stdin until "shutdown" or the end of input, and answer
 * every message that has an id (open, close, request; any other type is answered with an
 * error) with write_response. Lines that are not messages, and messages without an id, are
 * reported on stderr and ignored. On Windows it first puts stdin and stdout in binary mode, so
 * lines end in \n. It returns when the harness is done, with the sessions it left open still
 * open: jsonl_close_all closes them, or the program ends without waiting for what they hold. */
void jsonl_serve(const struct jsonl_adapter *adapter);

/* Close every session still open, as "close" would. */
void jsonl_close_all(const struct jsonl_adapter *adapter);

#endif /* CALLGATE_JSONL_H */

/* ======================================================================================== */
/* The implementation: compiled in the one file that defines CALLGATE_JSONL_IMPLEMENTATION.     */
/* ======================================================================================== */

#ifdef CALLGATE_JSONL_IMPLEMENTATION
#ifndef CALLGATE_JSONL_IMPLEMENTED
#define CALLGATE_JSONL_IMPLEMENTED

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#ifndef CALLGATE_JSONL_PROGRAM
#define CALLGATE_JSONL_PROGRAM "callgate-adapter"
#endif

static int jnew(struct jdoc *d, enum jtype type)
{
    if (d->count >= JSONL_MAX_VALUES) {
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

static int jhex4(const char *s, unsigned *out)
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

static char *jput_utf8(char *o, unsigned cp)
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
            if (jhex4(d->p + 1, &cp) < 0) {
                d->error = "bad \\u escape";
                return NULL;
            }
            d->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                if (d->p[1] != '\\' || d->p[2] != 'u' || jhex4(d->p + 3, &low) < 0
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
            o = jput_utf8(o, cp);
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
    if (depth > JSONL_MAX_DEPTH) {
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

int jparse(struct jdoc *d, const char *line)
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

int jget(const struct jdoc *d, int obj, const char *key)
{
    if (obj < 0 || d->node[obj].type != J_OBJ)
        return -1;
    for (int i = d->node[obj].child; i >= 0; i = d->node[i].next)
        if (strcmp(d->node[i].key, key) == 0)
            return i;
    return -1;
}

const char *jget_str(const struct jdoc *d, int obj, const char *key)
{
    int i = jget(d, obj, key);
    return i >= 0 && d->node[i].type == J_STR ? d->node[i].str : NULL;
}

long long jget_int(const struct jdoc *d, int obj, const char *key, long long fallback)
{
    int i = jget(d, obj, key);
    return i >= 0 && d->node[i].type == J_INT ? d->node[i].num : fallback;
}

int jget_bool(const struct jdoc *d, int obj, const char *key, int fallback)
{
    int i = jget(d, obj, key);
    return i >= 0 && d->node[i].type == J_BOOL ? (int)d->node[i].num : fallback;
}

void jout_reset(struct jout *o)
{
    o->len = 0;
    o->overflow = 0;
}

void jout_raw(struct jout *o, const char *json)
{
    size_t n = strlen(json);
    if (o->len + n + 2 > sizeof o->buf) { /* keep room for the newline */
        o->overflow = 1;
        return;
    }
    memcpy(o->buf + o->len, json, n);
    o->len += n;
}

void jout_str(struct jout *o, const char *text)
{
    char esc[8];
    jout_raw(o, "\"");
    for (; *text; text++) {
        unsigned char c = (unsigned char)*text;
        if (c == '"') jout_raw(o, "\\\"");
        else if (c == '\\') jout_raw(o, "\\\\");
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jout_raw(o, esc);
        } else {
            esc[0] = (char)c;
            esc[1] = '\0';
            jout_raw(o, esc);
        }
    }
    jout_raw(o, "\"");
}

void jout_int(struct jout *o, long long value)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", value);
    jout_raw(o, num);
}

void jout_line(struct jout *o)
{
    if (o->overflow) {
        fprintf(stderr, CALLGATE_JSONL_PROGRAM ": a message did not fit in %d bytes; dropped\n",
                JSONL_OUT_BYTES);
        return;
    }
    o->buf[o->len++] = '\n';
    /* One line at a time, whole, whichever thread writes it. */
#ifdef _WIN32
    _lock_file(stdout);
#else
    flockfile(stdout);
#endif
    fwrite(o->buf, 1, o->len, stdout);
    fflush(stdout);
#ifdef _WIN32
    _unlock_file(stdout);
#else
    funlockfile(stdout);
#endif
}

struct result result_ok(void)
{
    struct result r;
    memset(&r, 0, sizeof r);
    r.status = RESULT_OK;
    return r;
}

struct result result_code(uint32_t code)
{
    struct result r = result_ok();
    r.has_code = 1;
    r.code = code;
    return r;
}

struct result result_count(uint32_t count)
{
    struct result r = result_code(count);
    r.not_a_status = 1;
    return r;
}

struct result result_error(const char *message)
{
    struct result r = result_ok();
    r.status = RESULT_ERROR;
    r.message = message;
    return r;
}

struct result result_not_applicable(const char *message)
{
    struct result r = result_error(message);
    r.status = RESULT_NOT_APPLICABLE;
    return r;
}

static void output_add(struct result *r, const char *name, enum output_kind kind,
                       long long value, const char *text)
{
    if (r->noutputs == JSONL_MAX_OUTPUTS) {
        fprintf(stderr, CALLGATE_JSONL_PROGRAM ": more than %d outputs; %s left out\n",
                JSONL_MAX_OUTPUTS, name);
        return;
    }
    struct result_output *out = &r->outputs[r->noutputs++];
    out->name = name;
    out->kind = kind;
    out->value = value;
    out->text = text;
}

void output_int(struct result *r, const char *name, long long value)
{
    output_add(r, name, OUTPUT_INT, value, NULL);
}

void output_bool(struct result *r, const char *name, int value)
{
    output_add(r, name, OUTPUT_BOOL, value != 0, NULL);
}

void output_text(struct result *r, const char *name, const char *text)
{
    output_add(r, name, OUTPUT_TEXT, 0, text);
}

void write_response(long long id, const struct result *r, const char *(*code_name)(uint32_t))
{
    static struct jout o;
    jout_reset(&o);
    jout_raw(&o, "{\"type\":\"response\",\"id\":");
    jout_int(&o, id);
    if (r->status == RESULT_OK) {
        jout_raw(&o, ",\"status\":\"ok\"");
        if (r->has_code) {
            jout_raw(&o, ",\"code\":");
            jout_int(&o, (long long)r->code); /* unsigned 32-bit, in decimal */
            const char *name = r->not_a_status || !code_name ? NULL : code_name(r->code);
            if (name) {
                jout_raw(&o, ",\"name\":");
                jout_str(&o, name);
            }
        }
        if (r->noutputs) {
            jout_raw(&o, ",\"outputs\":{");
            for (int i = 0; i < r->noutputs; i++) {
                const struct result_output *out = &r->outputs[i];
                if (i)
                    jout_raw(&o, ",");
                jout_str(&o, out->name);
                jout_raw(&o, ":");
                if (out->kind == OUTPUT_BOOL)
                    jout_raw(&o, out->value ? "true" : "false");
                else if (out->kind == OUTPUT_TEXT)
                    jout_str(&o, out->text);
                else
                    jout_int(&o, out->value);
            }
            jout_raw(&o, "}");
        }
    } else {
        jout_raw(&o, r->status == RESULT_ERROR ? ",\"status\":\"error\""
                                               : ",\"status\":\"not_applicable\"");
        jout_raw(&o, ",\"message\":");
        jout_str(&o, r->message);
    }
    jout_raw(&o, "}");
    jout_line(&o);
}

/* Read one line into buf, without its newline (nor a \r before it). 0: a line; 1: a line longer
 * than the buffer, skipped; -1: the end of input. */
static int jsonl_read_line(char *buf, size_t cap, size_t *len)
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
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return overlong;
}

const char *jarg_str(const struct jsonl_request *q, const char *name)
{
    return jget_str(q->d, q->args, name);
}

long long jarg_int(const struct jsonl_request *q, const char *name, long long fallback)
{
    return jget_int(q->d, q->args, name, fallback);
}

int jarg_bool(const struct jsonl_request *q, const char *name, int fallback)
{
    return jget_bool(q->d, q->args, name, fallback);
}

struct jsonl_slot {
    char name[JSONL_NAME_BYTES];
    void *state; /* the adapter's */
};

struct jsonl_session {
    long long id;
    int nslots;
    struct jsonl_slot slots[JSONL_MAX_SLOTS];
};

static struct jsonl_session *jsonl_sessions[JSONL_MAX_SESSIONS];

static int jsonl_find_session(long long id)
{
    for (int i = 0; i < JSONL_MAX_SESSIONS; i++)
        if (jsonl_sessions[i] && jsonl_sessions[i]->id == id)
            return i;
    return -1;
}

static void jsonl_free_session(const struct jsonl_adapter *a, struct jsonl_session *session)
{
    for (int i = 0; i < session->nslots; i++)
        a->close_slot(session->slots[i].state);
    free(session);
}

static struct result jsonl_open(const struct jsonl_adapter *a, const struct jdoc *d, int msg)
{
    long long id = jget_int(d, msg, "session", -1);
    int slots = jget(d, msg, "slots");
    if (slots < 0 || d->node[slots].type != J_ARR)
        return result_error("open needs an array of slots");
    if (jsonl_find_session(id) >= 0)
        return result_error("this session is already open");
    int free_index = -1;
    for (int i = 0; i < JSONL_MAX_SESSIONS && free_index < 0; i++)
        if (!jsonl_sessions[i])
            free_index = i;
    if (free_index < 0)
        return result_error("too many sessions open at once");
    struct jsonl_session *session = calloc(1, sizeof *session);
    if (!session)
        return result_error("out of memory");
    session->id = id;
    for (int i = d->node[slots].child; i >= 0; i = d->node[i].next) {
        const char *name = jget_str(d, i, "name"), *machine = jget_str(d, i, "machine");
        struct jsonl_slot *slot = &session->slots[session->nslots];
        struct result r;
        if (!name || !machine || strlen(name) >= JSONL_NAME_BYTES)
            r = result_error("each slot needs a name (up to 64 characters) and a machine");
        else if (session->nslots == JSONL_MAX_SLOTS)
            r = result_error("too many slots in one session");
        else
            r = a->open_slot(machine, d, jget(d, i, "config"), &slot->state);
        if (r.status != RESULT_OK) {
            jsonl_free_session(a, session);
            return r;
        }
        snprintf(slot->name, sizeof slot->name, "%s", name);
        session->nslots++;
    }
    jsonl_sessions[free_index] = session;
    return result_ok();
}

static struct result jsonl_close(const struct jsonl_adapter *a, long long id)
{
    int i = jsonl_find_session(id);
    if (i < 0)
        return result_error("no open session with this id");
    jsonl_free_session(a, jsonl_sessions[i]);
    jsonl_sessions[i] = NULL;
    return result_ok();
}

static struct result jsonl_perform(const struct jsonl_adapter *a, const struct jdoc *d, int msg)
{
    struct jsonl_request q;
    q.session = jget_int(d, msg, "session", -1);
    q.slot = jget_str(d, msg, "slot");
    q.op = jget_str(d, msg, "op");
    q.d = d;
    q.args = jget(d, msg, "args");
    q.wait_ms = jget_int(d, msg, "wait_ms", 0);
    int i = jsonl_find_session(q.session);
    if (i < 0)
        return result_error("no open session with this id");
    if (!q.slot || !q.op || q.args < 0 || d->node[q.args].type != J_OBJ)
        return result_error("a request needs slot, op and args");
    const struct jsonl_session *session = jsonl_sessions[i];
    for (int k = 0; k < session->nslots; k++)
        if (strcmp(session->slots[k].name, q.slot) == 0)
            return a->request(session->slots[k].state, &q);
    return result_error("no slot of this name in the session");
}

void jsonl_close_all(const struct jsonl_adapter *adapter)
{
    for (int i = 0; i < JSONL_MAX_SESSIONS; i++) {
        if (jsonl_sessions[i]) {
            jsonl_free_session(adapter, jsonl_sessions[i]);
            jsonl_sessions[i] = NULL;
        }
    }
}

void jsonl_serve(const struct jsonl_adapter *adapter)
{
    static struct jdoc doc;
    static char line[JSONL_LINE_BYTES + 1];
    size_t len;
    int status;
#ifdef _WIN32
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stdin), _O_BINARY);
#endif
    while ((status = jsonl_read_line(line, sizeof line, &len)) >= 0) {
        if (status == 1) {
            fprintf(stderr, CALLGATE_JSONL_PROGRAM ": skipped a line longer than %d bytes\n",
                    JSONL_LINE_BYTES);
            continue;
        }
        if (len == 0)
            continue;
        int msg = jparse(&doc, line);
        const char *type = msg >= 0 ? jget_str(&doc, msg, "type") : NULL;
        long long id = msg >= 0 ? jget_int(&doc, msg, "id", -1) : -1;
        if (!type) {
            fprintf(stderr, CALLGATE_JSONL_PROGRAM ": ignored a line that is not a message (%s)\n",
                    doc.error ? doc.error : "no type");
            continue;
        }
        if (strcmp(type, "hello") == 0) {
            if (jget_int(&doc, msg, "protocol", 0) != JSONL_PROTOCOL)
                fprintf(stderr, CALLGATE_JSONL_PROGRAM ": the harness speaks another protocol "
                                "version; answering with version %d\n", JSONL_PROTOCOL);
            adapter->handshake();
            continue;
        }
        if (strcmp(type, "shutdown") == 0)
            break;
        if (id < 1) {
            fprintf(stderr, CALLGATE_JSONL_PROGRAM ": ignored a %s message without an id\n", type);
            continue;
        }
        struct result r;
        if (strcmp(type, "open") == 0)
            r = jsonl_open(adapter, &doc, msg);
        else if (strcmp(type, "close") == 0)
            r = jsonl_close(adapter, jget_int(&doc, msg, "session", -1));
        else if (strcmp(type, "request") == 0)
            r = jsonl_perform(adapter, &doc, msg);
        else
            r = result_error("unknown message type");
        write_response(id, &r, adapter->code_name);
    }
}

#endif /* CALLGATE_JSONL_IMPLEMENTED */
#endif /* CALLGATE_JSONL_IMPLEMENTATION */
