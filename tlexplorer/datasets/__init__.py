"""Domains, image folders, torchvision datasets, splits and label alignment."""
from .base import (HALF_NORM, IMAGENET_NORM, ArrayDomainSplit, DomainSplit, TransferData, instance_id)

__all__ = ["HALF_NORM", "IMAGENET_NORM", "ArrayDomainSplit", "DomainSplit", "TransferData", "instance_id"]
