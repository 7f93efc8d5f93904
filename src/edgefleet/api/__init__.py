"""The edgefleet API (group ``edgefleet.io``, version ``v1alpha1``): pydantic models that are the contract."""

from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.api.common import API_VERSION, GROUP, VERSION, Condition, LabelSelector, ObjectMeta
from edgefleet.api.edgedevice import DesiredModel, EdgeDevice, EdgeDeviceSpec, EdgeDeviceStatus, ModelStatus
from edgefleet.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "DesiredModel",
    "EdgeDevice",
    "EdgeDeviceSpec",
    "EdgeDeviceStatus",
    "LabelSelector",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelStatus",
    "ObjectMeta",
    "common",
    "edgedevice",
    "modeldeployment",
]
