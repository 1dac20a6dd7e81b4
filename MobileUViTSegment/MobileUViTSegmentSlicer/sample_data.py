"""The bundled sample case (MSD Task04 hippocampus case 046, CC BY-SA 4.0) for the Sample Data module and the self-test.

The files ship inside the module (``Resources/SampleData``), so the Sample Data entry points at them with a
``file://`` URI and Slicer still verifies the SHA256 below before loading; a test checks that the digests match the
shipped files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from MobileUViTSegmentLib.resources import sample_data_dir

CATEGORY = "MobileUViT Segment"
SAMPLE_NAME = "MobileUViTHippocampusMRI"
SAMPLE_NODE_NAME = "hippocampus_046"
SAMPLE_VOLUME_FILE = "hippocampus_046.nii.gz"
SAMPLE_VOLUME_SHA256 = "5207924d6f3b05161b91fa6219a8363b2297ec4f959ff109d692646829e85077"
SAMPLE_LABEL_FILE = "hippocampus_046_label.nii.gz"
SAMPLE_LABEL_SHA256 = "58ac1ed65beea380b95ee08b521cb919a31c36125a0b3f2bd8e3e0ae97bfd935"


def sampleVolumePath() -> Path:
    return sample_data_dir() / SAMPLE_VOLUME_FILE


def sampleLabelPath() -> Path:
    return sample_data_dir() / SAMPLE_LABEL_FILE


def sha256Of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def registerSampleData(sampleDataLogicClass: Any, thumbnailPath: Path) -> None:
    """Add the sample case to Slicer's Sample Data module (``SampleData.SampleDataLogic`` is passed in)."""
    sampleDataLogicClass.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(thumbnailPath),
        uris=sampleVolumePath().as_uri(),
        fileNames=SAMPLE_VOLUME_FILE,
        nodeNames=SAMPLE_NODE_NAME,
        checksums=f"SHA256:{SAMPLE_VOLUME_SHA256}",
    )
