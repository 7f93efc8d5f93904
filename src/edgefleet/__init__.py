"""edgefleet: GitOps rollout of compiled ONNX models to fleets of edge devices."""

__version__ = "0.1.0"
__all__ = ["__version__"]
