/* callgate_wine_absent.c: the requests this adapter declines, declared in the handshake.
 *
 * Included by callgate_wine_adapter.c after the machines' files. A decline (`not_applicable`)
 * counts only when the handshake's `absent` declares the request (a feature, an operation
 * MACHINE.OP, or an argument form MACHINE.OP(PARAM=VALUE)) or when an earlier request of the
 * case refused the object it needs (docs/adapter-protocol.md, "Declining a request"); any
 * other decline is an adapter fault. So every request this adapter would decline whatever
 * happened before is named here, with the reason, from what is probed at start: callgate then
 * does not send it, and a case that reaches it is `not_applicable` with that reason.
 *
 * The other declines in the machines' files answer requests callgate never sends (features
 * the handshake does not declare), or follow a refusal of what the request needs.
 */

/* One `"key":"reason"` member of the absent object, after the members already written. */
static void absent_entry(struct jout *o, const char *key, const char *reason)
{
    jout_raw(o, ",");
    jout_str(o, key);
    jout_raw(o, ":");
    jout_str(o, reason);
}

/* The operations and forms this adapter declines, as members of the handshake's `absent`
 * (written after its first member). */
static void write_absent_requests(struct jout *o)
{
    static char reason[600];
    /* com_call through the standard proxy (callgate_wine_com.c): no IFoo proxy/stub is built,
     * and CreateCall needs the proxy's ICallFactory, which com_setup asked for once. */
    if (com_mode == COM_MARSHALED) {
        absent_entry(o, "com_call.sync_call", "no IFoo proxy/stub is built, so IFoo::M cannot "
                     "be called through the proxy");
        void *factory = NULL;
        HRESULT qi = proxies[1] ? IUnknown_QueryInterface(proxies[1], &IID_ICallFactory, &factory)
                                : E_FAIL;
        if (SUCCEEDED(qi)) {
            IUnknown_Release((IUnknown *)factory);
        } else {
            snprintf(reason, sizeof reason, "probed at start: the standard proxy answered "
                     "QueryInterface(IID_ICallFactory) with 0x%08lX, so the client has no "
                     "ICallFactory to call CreateCall on (the QueryInterface step of the model "
                     "judges that)", (unsigned long)qi);
            absent_entry(o, "com_call.CreateCall", reason);
        }
    }
    /* container (callgate_wine_adapter.c): driven only as far as CoCreateInstance. */
    static const char *const container_ops[] = {
        "container.AddSynchronize", "container.WaitMultiple", "container.member_signal",
        "container.member_reset"};
    for (size_t i = 0; i < sizeof container_ops / sizeof container_ops[0]; i++)
        absent_entry(o, container_ops[i], "this adapter drives ISynchronizeContainer only as far "
                     "as CoCreateInstance; the runtime it was written against has none");
    /* thread_cancel (callgate_wine_cancel.c): the cancel object functions, where not exported. */
    if (!combase_export("CoSetCancelObject"))
        absent_entry(o, "thread_cancel.CoSetCancelObject",
                     "CoSetCancelObject is not exported by ole32 or combase");
    if (!combase_export("CoGetCancelObject"))
        absent_entry(o, "thread_cancel.CoGetCancelObject",
                     "CoGetCancelObject is not exported by ole32 or combase");
    /* rpc_notif (callgate_wine_order.c): driven only where rpcrt4.dll lacks the subscription
     * functions (Wine 8.0), whose valid forms then report the missing function. */
    if (rpcrt4_export("RpcServerSubscribeForNotification")) {
        static const char *const notif_ops[] = {
            "rpc_notif.RpcServerSubscribeForNotification",
            "rpc_notif.RpcServerUnsubscribeForNotification", "rpc_notif.server_wait_notification"};
        for (size_t i = 0; i < sizeof notif_ops / sizeof notif_ops[0]; i++)
            absent_entry(o, notif_ops[i], "this adapter drives server notifications only where "
                         "rpcrt4.dll lacks RpcServerSubscribeForNotification (Wine 8.0)");
        return;
    }
    static const char *const check_forms[] = {
        "rpc_notif.RpcServerSubscribeForNotification(kinds=other)",
        "rpc_notif.RpcServerSubscribeForNotification(binding=NULL_other_thread)"};
    for (size_t i = 0; i < sizeof check_forms / sizeof check_forms[0]; i++)
        absent_entry(o, check_forms[i], "RpcServerSubscribeForNotification is not exported by "
                     "this rpcrt4.dll: a missing function fails this argument check without "
                     "checking anything, so the check cannot be shown (the valid forms report the "
                     "missing function)");
    absent_entry(o, "rpc_notif.server_wait_notification", "RpcServerSubscribeForNotification is "
                 "not exported by this rpcrt4.dll, so no subscription is ever made and the test "
                 "server has nothing to wait on");
}
