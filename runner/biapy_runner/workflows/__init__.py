"""Workflow implementations, one module per PROBLEM.TYPE family; ``workflows.base.workflow_for``
imports only the module a run needs (its imports register the workflow)."""

#: PROBLEM.TYPE -> the module of this package that implements it.
MODULES = {
    "SEMANTIC_SEG": "semantic",
    "INSTANCE_SEG": "instance",
    "DETECTION": "detection",
    "DENOISING": "restoration",
    "SELF_SUPERVISED": "restoration",
    "IMAGE_TO_IMAGE": "restoration",
    "SUPER_RESOLUTION": "restoration",
    "CLASSIFICATION": "classification",
}
