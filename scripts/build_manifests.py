"""Rebuild the shipped manifests ``ctlib/data/manifests/<name>.csv`` from a verified copy.

Usage (maintainers only; the manifests are committed):

    python scripts/build_manifests.py --root ../shared/data

Each manifest row: relpath, label (1 = COVID), patient_id, official_split, width,
height, format, file_sha256 (upstream bytes), pixel_sha256 (decoded grayscale).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctlib.data import build_manifest, manifest_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="folder holding the data sets")
    parser.add_argument("names", nargs="*", default=["covid19-ct", "sars-cov-2-ct"])
    args = parser.parse_args()
    for name in args.names:
        frame = build_manifest(name, args.root)
        out = manifest_path(name)
        frame.to_csv(out, index=False)
        print(f"{out}: {len(frame)} rows, labels {frame['label'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
