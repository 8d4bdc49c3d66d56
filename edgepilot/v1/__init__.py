"""Generated protobuf / gRPC stubs for package ``edgepilot.v1`` (regenerate with
``make protos`` (scripts/protos.py); do not edit the ``*_pb2*`` files by hand)."""
