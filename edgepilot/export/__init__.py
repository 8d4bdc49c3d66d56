"""torch -> ONNX export, quantization, TensorRT engine builds, parity checks and signed bundles."""
