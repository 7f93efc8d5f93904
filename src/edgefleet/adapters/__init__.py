"""Adapters: the only modules that talk to Kubernetes, Git, ONNX Runtime, HTTP and the filesystem formats."""
