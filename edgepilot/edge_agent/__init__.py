"""Everything that runs on a device (UE) or an edge server. Never imports torch,
``cloud_trainer`` or ``export``: it needs only numpy, onnxruntime, grpcio, protobuf
and paho-mqtt (and ``cryptography`` to verify bundles)."""
