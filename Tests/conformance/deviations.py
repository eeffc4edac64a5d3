"""Where the reference peers deviate, case by case: (peer, role, case id) -> reason.

Only reference peers (--peer node_ws / websockets) get entries, and only for behaviour that
RFC 6455/7692 (or Autobahn's strict reading the suite adopts, e.g. fail-fast UTF-8) rules out.
The tests they name run as strict xfails: if the peer starts to conform, the run fails and the
entry must go.
"""
DEVIATIONS: dict[tuple[str, str, str], str] = {}
