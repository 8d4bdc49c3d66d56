"""The gRPC edge server (no torch): a general server shell (health checking, reflection,
TLS / mTLS, message-size limits, Prometheus metrics, graceful drain) onto which services
register, and the split-inference service with dynamic micro-batching."""

from edgepilot.edge_agent.server.app import EdgeServer, ServerConfig, ServiceRegistration
from edgepilot.edge_agent.server.batcher import MicroBatcher, QueueFull
from edgepilot.edge_agent.server.errors import RequestError
from edgepilot.edge_agent.server.metrics import ServerMetrics
from edgepilot.edge_agent.server.tls import TLSConfig

__all__ = ["EdgeServer", "MicroBatcher", "QueueFull", "RequestError", "ServerConfig", "ServerMetrics",
           "ServiceRegistration", "TLSConfig"]
