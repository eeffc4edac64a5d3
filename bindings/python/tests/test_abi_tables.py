"""The package keeps no second copy of the header's numbers: its enums and errors are those of
the generated table (_abi, checked against include/orchestra.h by the abi.consistency test)
and of the loaded library."""
import pytest

import orchestra
from orchestra import _abi, _lib, errors
from orchestra.agent import AgentState
from orchestra.message import ContentType, Priority
from orchestra.queue import DropReason, Policy
from orchestra.router import Action
from orchestra.ws import ClientState, SlowConsumer

ENUMS = [
    (AgentState, "orc_agent_state_t"),
    (ClientState, "orc_client_state_t"),
    (Priority, "orc_priority_t"),
    (ContentType, "orc_content_type_t"),
    (Policy, "orc_queue_policy_t"),
    (DropReason, "orc_drop_reason_t"),
    (Action, "orc_route_action_t"),
    (SlowConsumer, "orc_slow_consumer_t"),
]


@pytest.mark.parametrize("cls,c_type", ENUMS, ids=[c for _, c in ENUMS])
def test_enum_is_the_headers(cls, c_type):
    prefix, values = _abi.ENUMS[c_type]
    assert {m.name: m.value for m in cls} == values


def test_library_error_table_is_the_generated_one():
    # The library's names and texts over the range -1, -2, ... are the rows of ORC_ERRNO_MAP.
    lowest = _abi.ERRORS[-1][1]
    for name, value, text in _abi.ERRORS:
        assert _lib.orc_err_name(value).decode() == name
        assert _lib.orc_strerror(value).decode() == text
    assert _lib.orc_err_name(lowest - 1).decode() == "ORC_EUNKNOWN"
    assert errors._library_codes() == {value: name for name, value, _ in _abi.ERRORS}


@pytest.mark.parametrize("name,value,text", _abi.ERRORS, ids=[e[0] for e in _abi.ERRORS])
def test_every_code_has_its_exception(name, value, text):
    e = errors.error_for(value)
    assert type(e) is errors._BY_NAME[name]
    assert type(e) is not errors.OrchestraError
    assert (e.code, e.name) == (value, name)


def test_tls_error_is_mapped():
    # The code the Node binding once missed (a table of fixed length 17).
    assert isinstance(errors.error_for(_abi.ORC_ETLS), orchestra.TLSError)


def test_an_unknown_code_raises_the_base_class():
    e = errors.error_for(_abi.ERRORS[-1][1] - 1)
    assert type(e) is errors.OrchestraError
    assert e.name == "ORC_EUNKNOWN"
