"""Domains, image folders, torchvision datasets, splits and label alignment."""
from .align import align_classes, remap_labels
from .base import (HALF_NORM, IMAGENET_NORM, ArrayDomainSplit, DomainSplit, TransferData, instance_id)
from .folders import IMAGE_EXTENSIONS, FileDomainSplit, image_folder_domain, load_image, scan_image_folder
from .spec import folders_spec, load_transfer_data, resolve_norm, torchvision_spec
from .splits import stratified_split
from .torchvision_sets import DATASET_NAMES, torchvision_domain

__all__ = [
    "HALF_NORM", "IMAGENET_NORM", "ArrayDomainSplit", "DomainSplit", "TransferData", "instance_id",
    "align_classes", "remap_labels", "stratified_split",
    "IMAGE_EXTENSIONS", "FileDomainSplit", "image_folder_domain", "load_image", "scan_image_folder",
    "DATASET_NAMES", "torchvision_domain",
    "folders_spec", "load_transfer_data", "resolve_norm", "torchvision_spec",
]
