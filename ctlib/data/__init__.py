"""The data layer: the paper's data sets (Sec. 3) and a synthetic one; rooms, lower ones first.

* :mod:`~ctlib.data.registry` -- the data sets as data (:data:`DATASETS`, :data:`CLASS_NAMES`);
* :mod:`~ctlib.data.images` -- reading any image file as 2-D ``uint8`` (:func:`read_grayscale`);
* :mod:`~ctlib.data.folders` -- where a data set's images lie, and wrong layouts explained;
* :mod:`~ctlib.data.manifest`, :mod:`~ctlib.data.verify` -- the shipped manifests, copies checked;
* :mod:`~ctlib.data.synthetic` -- the synthetic set with known lesion masks;
* :mod:`~ctlib.data.dataset` -- :class:`CTDataset`, :func:`load_dataset`, :func:`load_folder`;
* :mod:`~ctlib.data.groups` -- which slices belong together (pseudo-patients);
* :mod:`~ctlib.data.fetch` -- :func:`download` from the public sources, resumable and safe.
"""

from ctlib.data.dataset import CTDataset, load_dataset, load_folder
from ctlib.data.fetch import download, plan_download
from ctlib.data.folders import find_dataset_folder, list_images
from ctlib.data.groups import pseudo_patient_file, with_pseudo_patients
from ctlib.data.images import IMAGE_SUFFIXES, pixel_hash, read_grayscale, to_grayscale
from ctlib.data.manifest import build_manifest, manifest_path, read_manifest
from ctlib.data.registry import (
    CLASS_NAMES,
    DATASETS,
    REAL_DATASETS,
    DatasetInfo,
    dataset_info,
    list_datasets,
)
from ctlib.data.verify import VerificationReport, check_readable, verify_dataset
from ctlib.errors import DataError, DataVerificationError, ImageReadError

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "IMAGE_SUFFIXES",
    "REAL_DATASETS",
    "CTDataset",
    "DataError",
    "DataVerificationError",
    "DatasetInfo",
    "ImageReadError",
    "VerificationReport",
    "build_manifest",
    "check_readable",
    "dataset_info",
    "download",
    "find_dataset_folder",
    "list_datasets",
    "list_images",
    "load_dataset",
    "load_folder",
    "manifest_path",
    "pixel_hash",
    "plan_download",
    "pseudo_patient_file",
    "read_grayscale",
    "read_manifest",
    "to_grayscale",
    "verify_dataset",
    "with_pseudo_patients",
]
