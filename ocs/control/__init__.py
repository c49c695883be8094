"""Events out of the charging path (design.md "Around the core"): cut-off and re-authorization in
the network (Diameter ASR/RAR, RADIUS Disconnect/CoA), the session -> node routing that lets any
node or ``ocsctl`` reach the node holding a peer, and alerts to people (PostgreSQL outbox).

Nothing here runs inside a charging request: the core only hands events over (a callback that
queues), and front ends only send what they are asked to send.
"""
