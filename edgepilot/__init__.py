"""edgepilot: from a cloud-trained offloading policy to a fleet of edge devices.

One namespace, one part per subpackage (dependencies point down this list):

- ``edgepilot.cli``: the ``edgepilot`` command line;
- ``edgepilot.emulation``: the laptop side of an emulated fleet (embedded broker, agent
  host, coordinator, CPU and radio emulation);
- ``edgepilot.export``: torch -> ONNX / TensorRT, quantization, parity, signed bundles;
- ``edgepilot.cloud_trainer``: simulator, TAC / DTAC / baselines, evaluation (torch);
- ``edgepilot.edge_agent``: what runs on a device or an edge server (no torch, Python 3.8);
- ``edgepilot.hardware``: hardware profiles and the assets that flash a board;
- ``edgepilot.v1``: the generated protobuf / gRPC stubs of ``proto/edgepilot/v1``;
- ``edgepilot.models``: the policies that ship with edgepilot.
"""

__version__ = "0.1.0"
