"""edgepilot: from a cloud-trained offloading policy to a fleet of edge devices.

The ``edgepilot`` package holds the command line and the generated protocol stubs
(``edgepilot.v1``); the product itself lives in ``edge_agent`` (device side, no torch),
``cloud_trainer`` (simulator and training), ``export`` (ONNX / TensorRT / bundles) and
``hardware`` (profiles, emulation, flashing assets).
"""

__version__ = "0.1.0"
