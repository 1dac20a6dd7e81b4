"""Reading and writing images through SimpleITK, with user-facing errors and atomic writes.

Supported inputs: any single file SimpleITK reads (NRRD, NIfTI, MHA/MHD, PNG, JPEG, BMP, TIFF, ...) and a folder that
holds one DICOM series. PNG/JPEG/BMP load as single-slice 2D images (RGB as a 3-component vector image).
:func:`match_components` turns a colour picture into the grey one a single-channel 2D model reads.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import SimpleITK as sitk

from .errors import InputError, OutputError
from .system_memory import available_memory_bytes, describe_bytes

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd")


def full_suffix(path: Path) -> str:
    """The suffix that decides the format (``.nii.gz`` and ``.seg.nrrd`` count as one)."""
    name = path.name.lower()
    for double in (".seg.nrrd", ".nii.gz"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def stem(path: Path) -> str:
    """The file name without its (possibly double) suffix."""
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    # ITK messages start with a file/line location; the description is the last meaningful line.
    for line in reversed(lines):
        if line.lower().startswith("description:"):
            return line.split(":", 1)[1].strip()
    return lines[-1] if lines else type(error).__name__


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(f"{folder} is a folder without a DICOM series; give an image file or a DICOM folder")
    if len(series_ids) > 1:
        raise InputError(f"{folder} holds {len(series_ids)} DICOM series; give a folder with exactly one")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    return reader.Execute()


def _check_declared_size(reader: sitk.ImageFileReader, path: Path) -> None:
    """Refuse, before a byte is allocated, a header that declares more voxels than this machine's memory holds."""
    size = reader.GetSize()
    probe = sitk.Image([1] * len(size), reader.GetPixelID(), reader.GetNumberOfComponents())
    needed = math.prod(size) * sitk.GetArrayViewFromImage(probe).itemsize * reader.GetNumberOfComponents()
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise InputError(f"input {path} declares {'x'.join(map(str, size))} voxels ({describe_bytes(needed)} to "
                         f"read), more than the {describe_bytes(available)} of memory available; it is not read")


def _check_gzip_complete(path: Path) -> None:
    """Read a gzip stream to its end: ITK's NIfTI reader silently fills a truncated file's missing voxels."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"input {path} is a truncated or corrupted gzip file ({error}); copy it again") from error


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read an image file or a DICOM series folder; raise :class:`InputError` with one clear line otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    try:
        if path.is_dir():
            return _read_dicom_series(path)
        if path.stat().st_size == 0:
            raise InputError(f"input {path} is an empty file")
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        _check_declared_size(reader, path)
        if path.name.lower().endswith(".gz"):
            _check_gzip_complete(path)
        return reader.Execute()
    except InputError:
        raise
    except PermissionError as error:
        raise InputError(f"input {path} cannot be read: permission denied") from error
    except RuntimeError as error:
        raise InputError(f"input {path} cannot be read as an image: {_first_line(error)}") from error


# ITU-R BT.601 luma weights, what OpenCV and Pillow use to turn a colour picture grey.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def match_components(image: sitk.Image, channels: int) -> sitk.Image:
    """A 2D picture with the components a 2D model of ``channels`` input channels reads.

    Public 2D datasets mix grey and colour files (15 of BUSI's 647 ultrasound PNGs are RGB), so a grey model gets
    the luma of an RGB(A) picture and a colour model drops an alpha channel. Anything else is returned unchanged and
    left to the input checks (a grey picture for a colour model is repeated to three channels there).
    """
    components = image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() != 2 or components not in (3, 4) or channels not in (1, 3):
        return image
    if channels == 3:
        if components == 3:
            return image
        rgb = sitk.Compose([sitk.VectorIndexSelectionCast(image, index) for index in range(3)])
        rgb.CopyInformation(image)
        return rgb
    grey = sum(weight * sitk.VectorIndexSelectionCast(image, index, sitk.sitkFloat32)
               for index, weight in enumerate(LUMA_WEIGHTS))
    grey.CopyInformation(image)
    return grey


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it into place only if the block succeeds.

    A crash or a cancel therefore never leaves a half-written result, and an existing file is replaced in one step.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{stem(path)}.", suffix=f".partial{full_suffix(path)}",
                                             dir=folder)
    os.close(descriptor)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_path, 0o666 & ~umask)  # mkstemp makes files private; results follow the user's umask
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write a small text file (a card, a summary, a split) so a crash leaves either the old file or the new one."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_image(image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> None:
    """Write ``image`` atomically; the format follows the file suffix."""
    with atomic_output(path) as temporary:
        try:
            sitk.WriteImage(image, str(temporary), useCompression=compress)
        except RuntimeError as error:
            raise OutputError(f"cannot write {path}: {_first_line(error)}") from error
