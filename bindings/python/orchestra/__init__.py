"""liborchestra for Python: messages, codecs, the h2A queue, the router, metrics, WebSocket
servers and clients on asyncio and hub agents, through ctypes over the library's C ABI (include/orchestra.h)."""
from . import _lib
from .agent import Agent, AgentState, AgentTask, AuthError, HubError, SyncAgent, SyncTask
from .errors import (Closed, CryptoError, Failed, Full, InternalError, InvalidArgument,
                     IOFailure, NoMemory, NoSpace, NotFound, OrchestraError, ParseError,
                     StateError, Timeout, TLSError, TooBig, Unsupported, VersionError,
                     WouldBlock)
from .message import Cipher, ContentType, Message, Priority
from .metrics import Metrics
from .queue import DropReason, Policy, Queue
from .router import Action, PublishResult, Router, subject_matches, validate_subject
from .ws import Client, ClientState, Event, Runtime, Server, SlowConsumer

__version__ = "0.1.0"
library_path: str = _lib.path
library_version: str = _lib.orc_version_string().decode()

__all__ = [
    "Action", "Agent", "AgentState", "AgentTask", "AuthError", "HubError", "SyncAgent", "SyncTask",
    "Cipher", "Client", "ClientState", "Event", "Runtime", "Server", "SlowConsumer", "Closed", "ContentType", "CryptoError", "DropReason", "Failed", "Full",
    "InternalError", "InvalidArgument", "IOFailure", "Message", "Metrics", "NoMemory", "NoSpace",
    "NotFound", "OrchestraError", "ParseError", "Policy", "Priority", "PublishResult", "Queue",
    "Router", "StateError", "Timeout", "TLSError", "TooBig", "Unsupported", "VersionError", "WouldBlock",
    "library_path", "library_version", "subject_matches", "validate_subject",
]
