"""Write the synthetic files of test-data/ that the Galaxy tool tests use (run once, offline).

    PYTHONPATH=runner:tests python galaxy/make_test_data.py [GROUP ...]

GROUP (default: all) is one or more of: segmentation, restoration, classification, decoders; a
zip is
rebuilt byte-different each time, so regenerate only the group you changed.

- ``cells3d.tif`` / ``cells3d_mask.tif``: a 3D volume (24, 48, 48) with four bright ellipsoid
  cells and their instance labels.
- ``cartocell_like.zip``: a BioImage.IO package shaped like the CartoCell models of the Galaxy
  tutorial (input 1x1x80x80x80 zyx with zero-mean-unit-variance, output B, C, M with a sigmoid),
  with a 1x1x1 convolution as the network: B and M follow the intensity, C is low everywhere
  and lowest inside the cells (a constant C would give BiaPy 3.7's watershed no seeds: its Otsu
  threshold of a constant channel is that constant).
- ``affinities3d.zip`` (group decoders): a 3D affinity model (channels ``A``: z, y, x) decoded
  by BiaPy 3.7's ``agglomeration``: a 3x3x3 convolution adding each voxel and its predecessor
  along the channel's axis, ``sigmoid(3 * (sum - 4))`` of the normalised volume (high when
  both are inside a cell), input ``16 + 8n`` per axis.
- ``intensity2d.zip``: a second 2D foreground model (a 1x1 convolution with a sigmoid on the
  normalised intensity), compared with the nuclei U-Net by the workflow test.
- ``dsb_nuclei_gt.csv``: the centroids of the nuclei in ``dsb_nuclei_mask.tif`` (detection
  ground truth in BiaPy's ``axis-0, axis-1`` columns).
- ``upsample2d.zip``: a 2D super-resolution package, nearest-neighbour upsampling by 2 (no
  weights, no preprocessing: the output is in the input's intensity units).
- ``nuclei_lr.tif`` / ``nuclei_lr_gt.tif``: a 128x128 crop of ``dsb_nuclei.tif`` (the GT) and
  its 2x2 block mean (64x64, the low-resolution input).
- ``classifier3.zip``: a 3-class classifier (fixed 32x32 input scaled by 1/255, softmax): class
  ``k`` scores ``-(m - c_k)^2 / 0.05`` for the image mean ``m`` and ``c = (1/6, 1/2, 5/6)``, so
  the class is the third of [0, 1] that ``m`` falls in.
- ``nuclei_offset.tif`` / ``nuclei_inverted.tif``: a 48x48 crop of ``dsb_nuclei.tif`` plus 100
  (middle class) and inverted (bright class); ``nuclei_classes.tabular``: the classes of these,
  ``dsb_nuclei`` (0) and ``nuclei_b`` (labelled 1 although it is the same pixels as
  ``dsb_nuclei``: one wrong prediction, accuracy 0.75).
- ``train_nuclei_{a,b,c}.tif`` / ``..._mask.tif`` (group training): three 64x64 crops of
  ``dsb_nuclei.tif`` and their masks, the train mode's tiny training (a, b) and test (c) set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile
import torch
from bmz_factory import make_model_package
from model_sources import AFFINITY3D, PIXEL_BCM, PIXEL_FOREGROUND, THIRDS, UPSAMPLE_SOURCE
from skimage.measure import regionprops

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"




def cells_volume() -> tuple[np.ndarray, np.ndarray]:
    """A (24, 48, 48) uint8 volume with four ellipsoids and their uint16 labels."""
    z, y, x = np.mgrid[:24, :48, :48]
    labels = np.zeros((24, 48, 48), np.uint16)
    centres = [(8, 12, 12), (12, 12, 34), (14, 34, 14), (16, 34, 34)]
    for label, (cz, cy, cx) in enumerate(centres, start=1):
        inside = ((z - cz) / 5.0) ** 2 + ((y - cy) / 8.0) ** 2 + ((x - cx) / 8.0) ** 2 <= 1
        labels[inside] = label
    rng = np.random.default_rng(0)
    image = np.where(labels > 0, 180, 20) + rng.normal(0, 5, labels.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def cartocell_like_model(out_dir: Path) -> Path:
    """The package zip of a fixed 80^3 B/C/M model (weights of a 1x1x1 convolution)."""
    state = {
        "conv.weight": torch.tensor([4.0, -4.0, 4.0]).reshape(3, 1, 1, 1, 1),
        "conv.bias": torch.tensor([-1.0, -4.0, 1.0]),
    }
    test_input = np.zeros((1, 80, 80, 80), np.float32)  # a cube: the test tensors stay small
    test_input[:, 30:50, 30:50, 30:50] = 1.0
    return make_model_package(
        out_dir, architecture_source=PIXEL_BCM, callable_name="PixelBCM", kwargs={},
        state_dict=state, ndim=3, out_channels=3, size=80, channel_names=["B", "C", "M"],
        preprocessing=[{"id": "zero_mean_unit_variance"}], postprocessing=[{"id": "sigmoid"}],
        test_input=test_input, name="cartocell like", tags=["3d", "instance-segmentation"],
    )





def affinity_model(out_dir: Path) -> Path:
    """The package zip of the 3D affinity model (z, y, x affinities to the predecessor)."""
    weight = torch.zeros(3, 1, 3, 3, 3)
    for k, pred in enumerate(((0, 1, 1), (1, 0, 1), (1, 1, 0))):
        weight[k, 0, 1, 1, 1] = 3.0
        weight[k, 0][pred] = 3.0
    state = {"conv.weight": weight, "conv.bias": torch.full((3,), -12.0)}
    image, _ = cells_volume()
    return make_model_package(
        out_dir, architecture_source=AFFINITY3D, callable_name="Affinity3D", kwargs={},
        state_dict=state, ndim=3, out_channels=3, size=(16, 8), channel_names=["A", "A", "A"],
        preprocessing=[{"id": "zero_mean_unit_variance"}], postprocessing=[{"id": "sigmoid"}],
        test_input=image[None, :16, :16, :16].astype(np.float32), name="affinities 3d",
        tags=["3d", "instance-segmentation", "affinities"],
    )


def decoders(build: Path) -> None:
    """The models of the non-watershed instance decoders."""
    (TEST_DATA / "affinities3d.zip").write_bytes(affinity_model(build).read_bytes())


def intensity_model(out_dir: Path) -> Path:
    """The package zip of a 2D foreground model: sigmoid(4 * normalised intensity - 2)."""
    state = {"conv.weight": torch.full((1, 1, 1, 1), 4.0), "conv.bias": torch.tensor([-2.0])}
    test_input = np.zeros((1, 64, 64), np.float32)
    test_input[:, 16:48, 16:48] = 1.0
    return make_model_package(
        out_dir, architecture_source=PIXEL_FOREGROUND, callable_name="PixelForeground",
        kwargs={}, state_dict=state, ndim=2, size=(64, 16), channel_names=["foreground"],
        preprocessing=[{"id": "zero_mean_unit_variance"}], postprocessing=[{"id": "sigmoid"}],
        test_input=test_input, name="intensity2d", tags=["2d", "semantic-segmentation"],
    )


def nuclei_points() -> str:
    """CSV of the nuclei centroids of dsb_nuclei_mask.tif (axis-0 = y, axis-1 = x)."""
    mask = tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif")
    rows = ["axis-0,axis-1"]
    for region in regionprops(mask):
        cy, cx = region.centroid
        rows.append(f"{cy:.1f},{cx:.1f}")
    return "\n".join(rows) + "\n"





def upsample_model(out_dir: Path) -> Path:
    """The package zip of a x2 nearest-neighbour 2D upsampler (input 16 + 8n per axis)."""
    return make_model_package(
        out_dir, architecture_source=UPSAMPLE_SOURCE, callable_name="Upsample",
        kwargs={"factor": 2}, ndim=2, size=(16, 8), scale=2, preprocessing=[],
        name="upsample2d", tags=["2d", "super-resolution"],
    )





def classifier_model(out_dir: Path) -> Path:
    """The package zip of the 3-class mean-intensity classifier (fixed 32x32 input)."""
    test_input = np.full((1, 32, 32), 128.0, np.float32)
    return make_model_package(
        out_dir, architecture_source=THIRDS, callable_name="Thirds", kwargs={},
        out_channels=3, size=32, classifier=True, test_input=test_input,
        preprocessing=[{"id": "scale_linear", "kwargs": {"gain": 1 / 255, "offset": 0.0}}],
        postprocessing=[{"id": "softmax"}], channel_names=["dim", "middle", "bright"],
        name="classifier3", tags=["2d", "classification"],
    )


def write_tiff(name: str, data: np.ndarray) -> None:
    """A zlib-compressed TIFF in test-data/."""
    tifffile.imwrite(TEST_DATA / name, data, compression="zlib")


def segmentation(build: Path) -> None:
    """The 3D instance, 2D semantic and detection test files."""
    image, labels = cells_volume()
    tifffile.imwrite(TEST_DATA / "cells3d.tif", image, compression="zlib",
                     metadata={"axes": "ZYX"})
    tifffile.imwrite(TEST_DATA / "cells3d_mask.tif", labels, compression="zlib",
                     metadata={"axes": "ZYX"})
    zip_path = cartocell_like_model(build)
    (TEST_DATA / "cartocell_like.zip").write_bytes(zip_path.read_bytes())
    (TEST_DATA / "intensity2d.zip").write_bytes(intensity_model(build).read_bytes())
    (TEST_DATA / "dsb_nuclei_gt.csv").write_text(nuclei_points())
    # byte copies under another name: a test of two images (same pixels, known metric)
    for name, copy in (("dsb_nuclei", "nuclei_b"), ("dsb_nuclei_mask", "nuclei_b_mask")):
        (TEST_DATA / f"{copy}.tif").write_bytes((TEST_DATA / f"{name}.tif").read_bytes())


def restoration(build: Path) -> None:
    """The super-resolution model, low-resolution image and its high-resolution GT."""
    high = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")[96:224, 64:192]
    low = high.reshape(64, 2, 64, 2).astype(np.float64).mean(axis=(1, 3))
    write_tiff("nuclei_lr.tif", np.rint(low).astype(np.uint8))
    write_tiff("nuclei_lr_gt.tif", high)
    (TEST_DATA / "upsample2d.zip").write_bytes(upsample_model(build).read_bytes())


def classification(build: Path) -> None:
    """The classifier, two more images of known class and the class table."""
    crop = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")[96:144, 96:144].astype(np.int16)
    write_tiff("nuclei_offset.tif", np.clip(crop + 100, 0, 255).astype(np.uint8))
    write_tiff("nuclei_inverted.tif", (255 - crop).astype(np.uint8))
    classes = {"dsb_nuclei": 0, "nuclei_b": 1, "nuclei_offset": 1, "nuclei_inverted": 2}
    rows = "".join(f"{stem}.tif\t{k}\n" for stem, k in classes.items())
    (TEST_DATA / "nuclei_classes.tabular").write_text("image\tclass\n" + rows)
    (TEST_DATA / "classifier3.zip").write_bytes(classifier_model(build).read_bytes())


def training(build: Path) -> None:
    """Tiny training and test crops for the train mode (64x64 nuclei and their masks)."""
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")
    mask = tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif")
    for name, (r, c) in (("a", (32, 32)), ("b", (128, 96)), ("c", (160, 160))):
        write_tiff(f"train_nuclei_{name}.tif", image[r:r + 64, c:c + 64])
        write_tiff(f"train_nuclei_{name}_mask.tif", mask[r:r + 64, c:c + 64])


GROUPS = {
    "segmentation": segmentation,
    "training": training,
    "restoration": restoration,
    "classification": classification,
    "decoders": decoders,
}


def main(groups: list[str]) -> None:
    """Write the files of ``groups`` (all when empty) into test-data/."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        sys.exit(f"unknown group(s) {unknown}; choose among {sorted(GROUPS)}")
    build = TEST_DATA.parent / ".galaxy-test" / "model-build"
    for name in groups or list(GROUPS):
        GROUPS[name](build)


if __name__ == "__main__":
    main(sys.argv[1:])
