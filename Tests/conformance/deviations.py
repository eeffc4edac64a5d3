"""Where the reference peers deviate, case by case: (peer, role, case id) -> reason.

Only reference peers (--peer node_ws / websockets) get entries, and only for behaviour that
RFC 6455/7692 (or Autobahn's strict reading the suite adopts, e.g. fail-fast UTF-8) rules out.
The tests they name run as strict xfails: if the peer starts to conform, the run fails and the
entry must go.
"""
FAIL_FAST = ("validates UTF-8 only once the whole message has arrived, so it fails the connection "
             "late (Autobahn rates this NON-STRICT; RFC 6455 8.1 sets no deadline)")
NO_VERSION_HEADER = ("refuses Sec-WebSocket-Version: 12 with 400 but without the Sec-WebSocket-Version "
                     "header RFC 6455 4.2.2 item 4 requires")

DEVIATIONS: dict[tuple[str, str, str], str] = {}
for peer in ("node_ws", "websockets"):
    for role in ("server", "client"):
        for cid in ("6.4.1", "6.4.2", "6.4.3", "6.4.4"):
            DEVIATIONS[(peer, role, cid)] = FAIL_FAST
    DEVIATIONS[(peer, "server", "hs.5")] = NO_VERSION_HEADER

DEVIATIONS[("node_ws", "server", "hs.6.9")] = (
    "accepts an HTTP/1.0 upgrade request with 101 (RFC 6455 4.1/4.2.1 require HTTP/1.1 or higher)")
for role in ("server", "client"):
    DEVIATIONS[("websockets", role, "7.1.5")] = (
        "answers a close frame that arrives between the fragments of a message with 1002 "
        "\"incomplete fragmented message\"; RFC 6455 5.4/5.5 allow control frames, close included, "
        "in the middle of a fragmented message")
    DEVIATIONS[("websockets", role, "12.9.6")] = (
        "after a message whose DEFLATE data ends in a BFINAL block (RFC 7692 7.2.3.4) it keeps the "
        "finished inflater and delivers the next compressed message as empty")
DEVIATIONS[("node_ws", "client", "13.c8.5")] = (
    "accepts an answer that holds permessage-deflate twice and goes on with compression; two "
    "accepted extensions claiming RSV1 conflict, which RFC 7692 5 says the client must fail")
