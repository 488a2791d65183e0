"""Noisy predictions for the non-watershed decoders, and BiaPy 3.7.1's labels for them.

Each case makes a prediction from known labels (the decoders' own target helpers) plus seeded
noise, so decoding is not trivial. ``tests/data/biapy371_decoders.npz`` holds the labels BiaPy
3.7.1's own post-processing functions give for the same predictions; ``test_biapy_parity.py``
checks that ours give the same partition. Regenerate (needs BiaPy's sdist unpacked, torch and
scikit-learn importable; nothing of it is imported by the runner or the tests)::

    pip download biapy==3.7.1 --no-deps --no-binary :all: -d /tmp/b && tar xzf /tmp/b/*.tar.gz -C /tmp/b
    PYTHONPATH=/path/to/sklearn python tests/biapy_parity_cases.py /tmp/b/biapy-3.7.1
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from biapy_runner.decode import agglomeration as ag
from biapy_runner.decode import embeddings as emb
from biapy_runner.decode import gradient_flow as gf
from biapy_runner.decode import omnipose as om
from biapy_runner.decode import stardist as sd
from known_labels import FIVE_BLOBS, blobs, embedseg_targets, normalised_distance

REFERENCE = Path(__file__).parent / "data" / "biapy371_decoders.npz"
IS = "PROBLEM.INSTANCE_SEG."
OMNI = IS + "DATA_CHANNELS_EXTRA_OPTS=[{Gv: {gradient_type: omnipose}}]"

GT2 = FIVE_BLOBS
GT2_SMALL = blobs(
    (32, 32),
    [(8, 8), (8, 20), (20, 10), (22, 24), (14, 14)],
    [(4, 4), (3, 5), (5, 3), (4, 4), (3, 3)],
)
GT3 = blobs(
    (16, 40, 40), [(6, 12, 12), (8, 14, 28), (9, 28, 20)], [(5, 8, 8), (6, 7, 9), (6, 9, 9)]
)


@dataclass
class Case:
    """A prediction, its channel names and the configuration overrides it decodes with."""

    module: Callable
    raw: np.ndarray
    channels: list[str]
    overrides: list[str] = field(default_factory=list)


def _cellpose(gt: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flows = 5 * gf.diffusion_flows(gt) + rng.normal(0, 0.8, (gt.ndim, *gt.shape)) * (gt > 0)
    return np.concatenate([(gt > 0)[None], flows]).astype(np.float32)


def _omnipose(gt: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dist, flows = om.distance_and_flows(gt)
    dist = np.where(gt > 0, dist, -5.0) + rng.normal(0, 0.2, gt.shape)
    flows = 5 * flows + rng.normal(0, 0.5, flows.shape) * (gt > 0)
    return np.concatenate([dist[None], flows]).astype(np.float32)


def _stardist(gt: np.ndarray, n_rays: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prob = normalised_distance(gt) + rng.normal(0, 0.05, gt.shape)
    # distances where the probability reaches PROB_THRESH: the only ones decoding reads
    dist = sd.ray_distances(gt, sd.rays(n_rays, gt.ndim), where=prob >= 0.4)
    dist *= rng.uniform(0.9, 1.1, (n_rays, *gt.shape))
    return np.concatenate([prob[None], dist]).astype(np.float32)


def _embedseg(gt: np.ndarray, spacing: tuple[float, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coords = emb.coordinate_map(gt.shape, 80, spacing)
    offsets, seediness = embedseg_targets(gt, coords)
    offsets += rng.normal(0, 1.5 / 79, offsets.shape)
    sigma = 0.5 + rng.normal(0, 0.05, coords.shape)
    seediness += rng.normal(0, 0.05, gt.shape)
    return np.concatenate([offsets, sigma, seediness[None]]).astype(np.float32)


def _affinities(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gt = np.zeros((16, 48, 48), dtype=np.int32)
    gt[1:15, 2:23, 2:46], gt[1:15, 25:46, 2:23], gt[1:15, 25:46, 23:46] = 1, 2, 3
    aff = np.zeros((3, *gt.shape))
    for c, off in enumerate(ag.affinity_offsets({}, 3)):
        lo, hi, val = ag._pair_slices(off)
        aff[c][val] = (gt[lo] == gt[hi]) & (gt[lo] > 0)
    for k, x in ((1, 24), (2, 12), (3, 34)):
        band = gt == k
        band[:, :, :x] = False
        band[:, :, x + 1 :] = False
        aff[:, band] = np.minimum(aff[:, band], 0.7)
    noise = np.abs(rng.normal(0, 0.04, aff.shape))  # less sure inside, sure on the boundaries
    return np.clip(aff - noise * aff + noise * 0.3 * (aff == 0), 0, 1).astype(np.float32)


def cases() -> dict[str, Callable[[], Case]]:
    """Every parity case by name, built on demand."""
    d3 = "PROBLEM.NDIM=3D"
    e_names = ["E_offset", "E_sigma", "E_seediness"]
    e_grid = IS + "EMBEDSEG.GRID_SIZE=80"
    return {
        "cellpose_2d_rescaled": lambda: Case(gf, _cellpose(GT2, 1), ["F", "Gv", "Gh"]),
        "cellpose_3d": lambda: Case(
            gf, _cellpose(GT3, 2), ["F", "Gz", "Gv", "Gh"], [d3, IS + "CELLPOSE.DIAMETER=30"]
        ),
        "omnipose_2d": lambda: Case(gf, _omnipose(GT2, 3), ["Db", "Gv", "Gh"], [OMNI]),
        "omnipose_2d_dbscan": lambda: Case(gf, _omnipose(GT2_SMALL, 4), ["Db", "Gv", "Gh"], [OMNI]),
        "omnipose_3d": lambda: Case(gf, _omnipose(GT3, 5), ["Db", "Gz", "Gv", "Gh"], [OMNI, d3]),
        "stardist_2d": lambda: Case(sd, _stardist(GT2, 32, 6), ["Db", "R"]),
        "stardist_3d": lambda: Case(sd, _stardist(GT3, 96, 7), ["Db", "R"], [d3]),
        "embedseg_2d": lambda: Case(emb, _embedseg(GT2, (1, 1), 8), e_names, [e_grid]),
        "embedseg_3d": lambda: Case(
            emb, _embedseg(GT3, (2, 1, 1), 9), e_names, [d3, "DATA.TEST.RESOLUTION=(2,1,1)", e_grid]
        ),
        "agglomeration_3d": lambda: Case(ag, _affinities(10), ["A"], [d3]),
    }


def _biapy(root: Path):  # pragma: no cover - reference generation only
    """BiaPy 3.7.1's post-processing modules, loaded from its source without the package."""
    import importlib.util
    import types

    def load(name: str, rel: str):
        spec = importlib.util.spec_from_file_location(name, root / "biapy" / rel)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    for pkg in ("biapy", "biapy.data", "biapy.data.post_processing"):
        sys.modules[pkg] = types.ModuleType(pkg)
    src = (root / "biapy/data/pre_processing.py").read_text()
    start = src.index("def generate_rays")
    pre = types.ModuleType("biapy.data.pre_processing")
    pre.np = np
    exec(src[start : src.index("@njit", start)], pre.__dict__)  # noqa: S102 (reference only)
    sys.modules["biapy.data.pre_processing"] = pre
    post = types.ModuleType("biapy.data.post_processing.post_processing")
    src = (root / "biapy/data/post_processing/post_processing.py").read_text()
    start = src.index("def watershed_by_channels")
    from skimage.filters import gaussian
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential, watershed

    post.__dict__.update(
        np=np,
        label=label,
        gaussian=gaussian,
        watershed=watershed,
        relabel_sequential=relabel_sequential,
        tqdm=lambda x, **k: x,
    )
    exec(src[start : src.index("\ndef ", start + 10)], post.__dict__)  # noqa: S102 (reference only)
    sys.modules[post.__name__] = post
    load("biapy.data.omnipose_core", "data/omnipose_core.py")
    return {
        "gt": load(
            "biapy.data.post_processing.gradient_tracking",
            "data/post_processing/gradient_tracking.py",
        ),
        "sd": load("biapy.data.post_processing.polygon_nms", "data/post_processing/polygon_nms.py"),
        "emb": load("biapy.data.post_processing.embedseg", "data/post_processing/embedseg.py"),
        "ag": load(
            "biapy.data.post_processing.affinity_agglomeration",
            "data/post_processing/affinity_agglomeration.py",
        ),
    }


def _reference(name: str, case: Case, ref: dict) -> np.ndarray:  # pragma: no cover
    import torch

    raw = np.moveaxis(case.raw, 0, -1)
    ndim = case.raw.ndim - 1
    if name.startswith("cellpose"):
        diam = 30.0 if ndim == 3 else 0.0
        return ref["gt"].cellpose_flows_to_instances(
            raw, case.channels, fg_channel="F", diameter=diam
        )
    if name.startswith("omnipose"):
        return ref["gt"].omnipose_flows_to_instances(raw, case.channels)
    if name.startswith("stardist"):
        return ref["sd"].stardist_instances_from_prediction(
            raw[..., 0],
            raw[..., 1:],
            prob_thresh=0.4,
            nms_iou_thresh=0.3,
            anisotropy=(1.0,) * ndim,
            grid=(1,) * ndim,
        )[0]
    if name.startswith("embedseg"):
        spacing = [2.0, 1.0, 1.0] if ndim == 3 else [1.0, 1.0, 1.0]
        cluster = ref["emb"].Embedding_cluster(torch.device("cpu"), spacing, ndim, grid_size=80)
        return cluster.create_instances(raw)
    return ref["ag"].watershed_and_agglomerate_affinities(
        raw, ag.affinity_offsets({}, 3), verbose=False
    )


if __name__ == "__main__":  # pragma: no cover
    biapy = _biapy(Path(sys.argv[1]))
    out = {}
    for case_name, build in cases().items():
        labels = np.asarray(_reference(case_name, build(), biapy))
        out[case_name] = labels.astype(np.uint16)
        print(case_name, int(labels.max()))
    np.savez_compressed(REFERENCE, **out)
