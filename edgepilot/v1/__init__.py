"""Generated protobuf / gRPC stubs for package ``edgepilot.v1`` (regenerate with
``python -m edgepilot.protos``; do not edit the ``*_pb2*`` files by hand)."""
