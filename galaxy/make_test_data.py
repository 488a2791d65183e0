"""Write the synthetic files of test-data/ that the Galaxy tool tests use (run once, offline).

    PYTHONPATH=runner:tests python galaxy/make_test_data.py

- ``cells3d.tif`` / ``cells3d_mask.tif``: a 3D volume (24, 48, 48) with four bright ellipsoid
  cells and their instance labels.
- ``cartocell_like.zip``: a BioImage.IO package shaped like the CartoCell models of the Galaxy
  tutorial (input 1x1x80x80x80 zyx with zero-mean-unit-variance, output B, C, M with a sigmoid),
  with a 1x1x1 convolution as the network: B and M follow the intensity, C stays low.
- ``intensity2d.zip``: a second 2D foreground model (a 1x1 convolution with a sigmoid on the
  normalised intensity), compared with the nuclei U-Net by the workflow test.
- ``dsb_nuclei_gt.csv``: the centroids of the nuclei in ``dsb_nuclei_mask.tif`` (detection
  ground truth in BiaPy's ``axis-0, axis-1`` columns).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch
from bmz_factory import make_model_package
from skimage.measure import regionprops

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"

ARCHITECTURE = '''import torch


class PixelBCM(torch.nn.Module):
    """One 1x1x1 convolution from the image to the channels B, C and M."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, kernel_size=1)

    def forward(self, x):
        return self.conv(x)
'''


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
        "conv.weight": torch.tensor([4.0, 0.0, 4.0]).reshape(3, 1, 1, 1, 1),
        "conv.bias": torch.tensor([-1.0, -4.0, 1.0]),
    }
    test_input = np.zeros((1, 80, 80, 80), np.float32)  # a cube: the test tensors stay small
    test_input[:, 30:50, 30:50, 30:50] = 1.0
    return make_model_package(
        out_dir, architecture_source=ARCHITECTURE, callable_name="PixelBCM", kwargs={},
        state_dict=state, ndim=3, out_channels=3, size=80, channel_names=["B", "C", "M"],
        preprocessing=[{"id": "zero_mean_unit_variance"}], postprocessing=[{"id": "sigmoid"}],
        test_input=test_input, name="cartocell like", tags=["3d", "instance-segmentation"],
    )


ARCHITECTURE_2D = '''import torch


class PixelForeground(torch.nn.Module):
    """One 1x1 convolution from the normalised image to a foreground logit."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, kernel_size=1)

    def forward(self, x):
        return self.conv(x)
'''


def intensity_model(out_dir: Path) -> Path:
    """The package zip of a 2D foreground model: sigmoid(4 * normalised intensity - 2)."""
    state = {"conv.weight": torch.full((1, 1, 1, 1), 4.0), "conv.bias": torch.tensor([-2.0])}
    test_input = np.zeros((1, 64, 64), np.float32)
    test_input[:, 16:48, 16:48] = 1.0
    return make_model_package(
        out_dir, architecture_source=ARCHITECTURE_2D, callable_name="PixelForeground",
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


def main() -> None:
    """Write the files into test-data/."""
    image, labels = cells_volume()
    tifffile.imwrite(TEST_DATA / "cells3d.tif", image, compression="zlib",
                     metadata={"axes": "ZYX"})
    tifffile.imwrite(TEST_DATA / "cells3d_mask.tif", labels, compression="zlib",
                     metadata={"axes": "ZYX"})
    build = TEST_DATA.parent / ".galaxy-test" / "model-build"
    zip_path = cartocell_like_model(build)
    (TEST_DATA / "cartocell_like.zip").write_bytes(zip_path.read_bytes())
    (TEST_DATA / "intensity2d.zip").write_bytes(intensity_model(build).read_bytes())
    (TEST_DATA / "dsb_nuclei_gt.csv").write_text(nuclei_points())
    # byte copies under another name: a test of two images (same pixels, known metric)
    for name, copy in (("dsb_nuclei", "nuclei_b"), ("dsb_nuclei_mask", "nuclei_b_mask")):
        (TEST_DATA / f"{copy}.tif").write_bytes((TEST_DATA / f"{name}.tif").read_bytes())


if __name__ == "__main__":
    main()
