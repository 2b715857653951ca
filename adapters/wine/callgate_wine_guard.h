/*
 * callgate_wine_guard.h: a frame-based exception guard around the adapter's API calls, for
 * mingw-w64 on x86-64 (GCC has no __try/__except, so RpcTryExcept does not compile there).
 *
 * guarded_call(fn, arg, &code) calls fn(arg) inside a structured exception handling scope made
 * with mingw-w64's __try1/__except1 (excpt.h): a scope-table entry for __C_specific_handler whose
 * filter takes every exception. Frame-based handlers are searched from the innermost frame out,
 * so an exception the runtime raises and handles inside the API call (Wine's rpcrt4 raises and
 * catches RPC status codes internally) never reaches this filter; one that escapes the API call
 * does, whatever its code: an access violation, Wine's unimplemented-function exception
 * 0x80000100, or an RPC status raised with RpcRaiseException (1783 RPC_X_BAD_STUB_DATA, ...).
 * The stack is unwound to guarded_call, which returns 1 with the exception code in *code; the
 * request is then answered with that code and the output `raised: true`, and the adapter process
 * goes on serving. Checked under Wine 8.0 with x86_64-w64-mingw32-gcc 12 at -O2, on the main
 * thread and on other threads.
 *
 * Kept in a header so that the adapter stays one compilation unit (the build compiles only
 * callgate_wine_adapter.c). Each use of __try1 defines the assembler labels .l_startw and
 * .l_endw, so it appears in exactly one function, which must never be inlined.
 */
#ifndef CALLGATE_WINE_GUARD_H
#define CALLGATE_WINE_GUARD_H

#include <windows.h>
#include <excpt.h>

/* The exception code the filter saw last, per thread. */
static __thread DWORD guarded_code;

/* The scope's filter (called by __C_specific_handler): record the code, take the exception.
 * Named by the assembler directive of __try1, so it must be an external, used symbol. */
__attribute__((used)) LONG callgate_wine_guard_filter(EXCEPTION_POINTERS *info, void *frame)
{
    (void)frame;
    guarded_code = info->ExceptionRecord->ExceptionCode;
    return EXCEPTION_EXECUTE_HANDLER;
}

/* Call fn(arg); 0 if it returned, 1 if an exception escaped it (its code in *code). */
static __attribute__((noinline)) int guarded_call(void (*fn)(void *), void *arg, DWORD *code)
{
    volatile int escaped = 1;
    guarded_code = 0;
    __try1(callgate_wine_guard_filter)
    fn(arg);
    escaped = 0;
    __except1
    if (escaped && code)
        *code = guarded_code;
    return escaped;
}

#endif
