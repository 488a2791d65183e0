"""The HTML report: rendered for every workflow (2D and 3D), its pictures checked; overlays."""

from __future__ import annotations

import html.parser
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image as PILImage
from skimage.segmentation import find_boundaries

from bmz_factory import serve_directory
from biapy_runner.cli import main
from biapy_runner.report.previews import (
    FP_COLOUR,
    GAP,
    TP_COLOUR,
    boundaries,
    compose,
    draw_contours,
    draw_points,
    label_colours,
    status_colours,
    Panel,
    View,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "test-data"


class _Sources(html.parser.HTMLParser):
    """Every ``src`` and ``href`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [
            v for k, v in attrs if k in ("src", "href") and v and not v.startswith("data:")
        ]


def check_report(out: Path) -> dict[str, tuple[int, int]]:
    """The report's page references only files that exist under ``report/``; every PNG decodes,
    is not blank; returns each picture's (width, height) by path relative to ``report/``."""
    page = out / "report" / "index.html"
    parser = _Sources()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.refs, "the report shows no picture"
    sizes = {}
    for ref in parser.refs:
        assert "://" not in ref and not ref.startswith("/"), ref
        path = out / "report" / ref
        assert path.is_file(), f"the report references a missing file {ref}"
        with PILImage.open(path) as picture:
            picture.load()
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float64)
        assert pixels.std() > 5, f"{ref} is blank"
        sizes[ref] = (pixels.shape[1], pixels.shape[0])
    return sizes


def _cli(args: list[str]) -> None:
    assert main([str(a) for a in args]) == 0


def _config(tmp_path: Path, *args: str) -> Path:
    cfg = tmp_path / "cfg.yaml"
    _cli(["make-config", *args, "--out", cfg])
    return cfg


def _page(out: Path) -> str:
    return (out / "report" / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_semantic_2d_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _cli(["run", "--config", DATA / "semantic_nuclei.yaml", "--images", DATA / "dsb_nuclei.tif",
          "--gt", DATA / "dsb_nuclei_mask.tif", "--out", out])  # fmt: skip
    sizes = check_report(out)
    # image | prediction | ground truth, each 256 x 256, side by side
    assert sizes["previews/dsb_nuclei.png"] == (3 * 256 + 2 * GAP, 256)
    assert "charts/per_image.png" in sizes
    page = _page(out)
    assert "UNet 2D Nuclei Broad" in page and "SEMANTIC_SEG" in page
    assert "0.6401" in page or "0.64" in page  # the foreground IoU of the example


@pytest.mark.slow
def test_instance_3d_report(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--ndim", "3D", "--slices", "24", "--workflow", "instance",
                  "--instance-channels", "BCM", "--voronoi")  # fmt: skip
    out = tmp_path / "out"
    _cli(["run", "--config", cfg, "--model", DATA / "cartocell_like.zip",
          "--images", DATA / "cells3d.tif", "--gt", DATA / "cells3d_mask.tif", "--out", out])  # fmt: skip
    sizes = check_report(out)
    # columns: image, before, final, vs GT, GT (48 wide); rows: z projection and middle z slice
    # (48 high), middle y and x slices (24 high: z vertical)
    assert sizes["previews/cells3d.png"] == (5 * 48 + 4 * GAP, 48 + 48 + 24 + 24 + 3 * GAP)
    assert {"charts/iou_thresholds.png", "charts/per_image.png", "charts/sizes.png"} <= set(sizes)
    page = _page(out)
    assert "max projection along z" in page and "middle x slice" in page
    assert "instances before post-processing" in page


@pytest.mark.slow
def test_detection_2d_report(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--ndim", "2D", "--workflow", "detection", "--peak-threshold", "0.5",
                  "--min-distance", "5", "--tolerance", "5")  # fmt: skip
    out = tmp_path / "out"
    _cli(["run", "--config", cfg, "--model", DATA / "unet2d_nuclei_broad.zip",
          "--images", DATA / "dsb_nuclei.tif", "--gt", DATA / "dsb_nuclei_gt.csv", "--out", out])  # fmt: skip
    sizes = check_report(out)
    # image | points | matched/false positive/missed
    assert sizes["previews/dsb_nuclei.png"] == (3 * 256 + 2 * GAP, 256)
    preview = np.asarray(PILImage.open(out / "report/previews/dsb_nuclei.png").convert("RGB"))
    third = preview[:, 2 * (256 + GAP) :]
    for colour in ((0, 220, 0), (255, 40, 40), (255, 210, 0)):  # TP, FP and FN all present
        assert (third == colour).all(axis=2).any(), colour


@pytest.mark.slow
def test_super_resolution_2d_report(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--ndim", "2D", "--workflow", "super-resolution", "--object-size", "8")
    out = tmp_path / "out"
    _cli(["run", "--config", cfg, "--model", DATA / "upsample2d.zip", "--images",
          DATA / "nuclei_lr.tif", "--gt", DATA / "nuclei_lr_gt.tif", "--out", out])  # fmt: skip
    sizes = check_report(out)
    # input (64 x 64 shown at the output's 128 x 128) | prediction | ground truth
    assert sizes["previews/nuclei_lr.png"] == (3 * 128 + 2 * GAP, 128)


@pytest.mark.slow
def test_classification_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    images = [DATA / f"{s}.tif" for s in ("dsb_nuclei", "nuclei_b", "nuclei_offset", "nuclei_inverted")]
    _cli(["run", "--config", DATA / "galaxy_classification.yaml", "--model", DATA / "classifier3.zip",
          "--images", *images, "--gt", DATA / "nuclei_classes.tabular", "--out", out])  # fmt: skip
    sizes = check_report(out)
    assert sizes["previews/nuclei_b.png"] == (128, 128)  # 256 px subsampled to at most 192
    assert "charts/confusion_0.png" in sizes
    page = _page(out)
    assert "predicted 0 (true 1)" in page  # nuclei_b is labelled 1, predicted 0


def _evaluate(tmp_path: Path, workflow: str, pred: Path, gt: Path, *extra: object) -> Path:
    out = tmp_path / f"eval_{workflow}"
    _cli(["evaluate", "--workflow", workflow, "--pred", pred, "--gt", gt, "--out", out, *extra])
    return out


def test_semantic_3d_report_from_evaluate(tmp_path: Path) -> None:
    pred = tmp_path / "cells3d.tif"
    shutil.copy(DATA / "cells3d_mask.tif", pred)
    out = _evaluate(tmp_path, "semantic", pred, DATA / "cells3d_mask.tif",
                    "--set", "PROBLEM.NDIM=3D", "--images", DATA / "cells3d.tif")  # fmt: skip
    sizes = check_report(out)
    # image | prediction | GT; four rows of views (z projection and slice 48, y and x slices 24)
    assert sizes["previews/cells3d.png"] == (3 * 48 + 2 * GAP, 2 * 48 + 2 * 24 + 3 * GAP)


def test_instance_2d_report_from_evaluate(tmp_path: Path) -> None:
    pred = tmp_path / "dsb_nuclei.tif"
    shutil.copy(DATA / "nuclei_b_mask.tif", pred)
    out = _evaluate(tmp_path, "instance", pred, DATA / "dsb_nuclei_mask.tif")
    sizes = check_report(out)
    # GT mask as backdrop | final | vs GT | GT
    assert sizes["previews/dsb_nuclei.png"] == (4 * 256 + 3 * GAP, 256)


def test_restoration_3d_report_from_evaluate(tmp_path: Path) -> None:
    pred = tmp_path / "cells3d.tif"
    shutil.copy(DATA / "cells3d.tif", pred)
    out = _evaluate(tmp_path, "denoising", pred, DATA / "cells3d.tif", "--set", "PROBLEM.NDIM=3D")
    sizes = check_report(out)
    assert sizes["previews/cells3d.png"] == (2 * 48 + GAP, 2 * 48 + 2 * 24 + 3 * GAP)


def test_detection_3d_report_from_evaluate(tmp_path: Path) -> None:
    points = pd.DataFrame({"axis-0": [5, 12, 20], "axis-1": [10, 24, 40], "axis-2": [8, 30, 44]})
    gt = tmp_path / "cells3d_gt.csv"
    points.iloc[:2].to_csv(gt, index=False)
    pred = tmp_path / "cells3d.tsv"
    points.assign(probability=0.9, **{"class": 1}).to_csv(pred, sep="\t", index=False)
    out = _evaluate(tmp_path, "detection", pred, gt, "--set", "PROBLEM.NDIM=3D",
                    "--images", DATA / "cells3d.tif")  # fmt: skip
    sizes = check_report(out)
    assert sizes["previews/cells3d.png"] == (3 * 48 + 2 * GAP, 2 * 48 + 2 * 24 + 3 * GAP)


def test_evaluate_compares_named_prediction_sets(tmp_path: Path) -> None:
    swan, buffalo = tmp_path / "swan", tmp_path / "buffalo"
    gt = tifffile.imread(DATA / "dsb_nuclei_mask.tif")
    for folder, labels in ((swan, gt), (buffalo, np.where(gt <= 13, 0, gt))):
        folder.mkdir()
        tifffile.imwrite(folder / "dsb_nuclei.tif", labels)
    out = tmp_path / "compare"
    _cli(["evaluate", "--workflow", "instance", "--pred-name", "swan", "--pred", swan / "dsb_nuclei.tif",
          "--pred-name", "buffalo", "--pred", buffalo / "dsb_nuclei.tif",
          "--gt", DATA / "dsb_nuclei_mask.tif", "--images", DATA / "dsb_nuclei.tif", "--out", out])  # fmt: skip
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    assert list(table.columns[:2]) == ["prediction", "image"]
    assert table["prediction"].tolist() == ["swan", "swan", "buffalo", "buffalo"]
    totals = table[table["image"] == "ALL"].set_index("prediction")
    assert totals.loc["swan", "f1@0.5"] == 1.0  # the GT against itself
    # buffalo misses the GT objects 1..13: recall 52/65
    assert totals.loc["buffalo", "recall@0.5"] == pytest.approx(52 / 65)
    assert totals.loc["buffalo", "precision@0.5"] == 1.0
    assert (out / "predictions" / "swan" / "post_proc" / "dsb_nuclei.tif").is_file()
    sizes = check_report(out)
    # image | swan final | swan vs GT | buffalo final | buffalo vs GT | GT
    assert sizes["previews/dsb_nuclei.png"] == (6 * 256 + 5 * GAP, 256)
    page = _page(out)
    assert "swan: final instances" in page and "buffalo: final instances" in page


def test_no_report_option(tmp_path: Path) -> None:
    pred = tmp_path / "dsb_nuclei.tif"
    shutil.copy(DATA / "dsb_nuclei_mask.tif", pred)
    out = _evaluate(tmp_path, "instance", pred, DATA / "dsb_nuclei_mask.tif", "--no-report")
    assert not (out / "report").exists()
    assert (out / "metrics" / "metrics.tsv").is_file()


def test_named_sets_need_a_name_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = tmp_path / "dsb_nuclei.tif"
    shutil.copy(DATA / "dsb_nuclei_mask.tif", pred)
    code = main(["evaluate", "--workflow", "instance", "--pred-name", "a", "--pred", str(pred),
                 "--pred", str(pred), "--gt", str(DATA / "dsb_nuclei_mask.tif"),
                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2
    assert "--pred-name" in capsys.readouterr().err


# ---- pictures ---------------------------------------------------------------------------------
def _known_labels() -> np.ndarray:
    labels = np.zeros((40, 50), dtype=np.int32)
    labels[5:15, 5:20] = 1
    labels[5:15, 20:30] = 2  # touches object 1
    yy, xx = np.mgrid[:40, :50]
    labels[(yy - 28) ** 2 + (xx - 35) ** 2 <= 36] = 3
    labels[25:35, 5:12] = 7
    return labels


def test_contours_sit_exactly_on_label_boundaries() -> None:
    labels = _known_labels()
    tile = np.zeros((*labels.shape, 3), dtype=np.uint8)
    drawn = draw_contours(tile, labels)
    coloured = drawn.any(axis=2)
    expected = find_boundaries(labels, connectivity=1, mode="inner") & (labels > 0)
    np.testing.assert_array_equal(coloured, expected)
    np.testing.assert_array_equal(boundaries(labels), expected)
    np.testing.assert_array_equal(drawn[coloured], label_colours(labels[coloured]))
    # distinct colours for touching objects; square 1 outlined by its 46-pixel ring
    one, two = label_colours(np.array([1, 2]))
    assert not np.array_equal(one, two)
    assert int((coloured & (labels == 1)).sum()) == 2 * 10 + 2 * 15 - 4


def test_contours_of_huge_label_ids_cost_their_pixels_not_the_largest_id() -> None:
    """A label image numbered up to 4e9 (a uint32 label volume's ids) is drawn without a colour
    table as long as its largest id (which took minutes and gigabytes)."""
    import tracemalloc

    labels = np.zeros((64, 64), dtype=np.uint32)
    labels[4:20, 4:20], labels[30:60, 30:60] = 4_000_000_000, 2**31
    tile = np.zeros((64, 64, 3), dtype=np.uint8)
    tracemalloc.start()
    drawn = draw_contours(tile, labels)
    palette = status_colours(([2**31], TP_COLOUR), ([4_000_000_000], FP_COLOUR))
    status = draw_contours(tile, labels, palette)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    np.testing.assert_array_equal(drawn[5, 4], label_colours(np.array([4_000_000_000]))[0])
    assert tuple(status[30, 40]) == TP_COLOUR and tuple(status[4, 10]) == FP_COLOUR
    assert int(status.any(axis=2).sum()) == 4 * 15 + 4 * 29


def test_points_drawn_at_their_place_in_slices() -> None:
    tile = np.zeros((30, 30, 3), dtype=np.uint8)
    coords = np.array([[10, 15, 15], [20, 5, 5]])
    drawn = draw_points(tile, coords, View("middle z slice", 0, 10), (255, 0, 0), radius=3)
    hit = drawn.any(axis=2)
    assert hit[15, 12] and hit[12, 15]  # the ring around (15, 15)
    assert not hit[15, 15]  # hollow
    assert not hit[5:9, 5:9].any()  # the point at z=20 is not in the slice z=10


def test_compose_sizes_and_gaps() -> None:
    a = Panel("a", [np.full((10, 20, 3), 9, np.uint8), np.full((6, 20, 3), 9, np.uint8)])
    b = Panel("b", [np.full((10, 12, 3), 9, np.uint8), np.full((6, 12, 3), 9, np.uint8)])
    grid = compose([a, b])
    assert grid.shape == (10 + 6 + GAP, 20 + 12 + GAP, 3)
    assert (grid[:, 20 : 20 + GAP] == 255).all()


# ---- in a real browser ------------------------------------------------------------------------
def _chromium() -> tuple[str, str] | None:
    """Paths of Debian's chromium and chromium-driver, ``None`` when they are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_report_in_a_headless_browser(tmp_path: Path) -> None:
    """The page loads with no failed request and no console error; every picture shows."""
    found = _chromium()
    required = bool(os.environ.get("CI") or os.environ.get("BIAPY_REQUIRE_BROWSER"))
    if found is None:
        if required:
            pytest.fail("chromium and chromium-driver must be installed in CI (.ci/run does it)")
        pytest.skip("chromium / chromium-driver not installed (apt-get install chromium chromium-driver)")
    if required:
        from selenium import webdriver
    else:
        webdriver = pytest.importorskip("selenium.webdriver")
    pred = tmp_path / "dsb_nuclei.tif"
    shutil.copy(DATA / "nuclei_b_mask.tif", pred)
    out = _evaluate(tmp_path, "instance", pred, DATA / "dsb_nuclei_mask.tif",
                    "--images", DATA / "dsb_nuclei.tif")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=found[1])
    with serve_directory(out / "report") as url:
        browser = webdriver.Chrome(options=options, service=service)
        try:
            browser.get(f"{url}/index.html")
            widths = browser.execute_script(
                "return Array.from(document.images).map(i => [i.getAttribute('src'), "
                "i.complete, i.naturalWidth]);"
            )
            failed = browser.execute_script(
                "return performance.getEntriesByType('resource')"
                ".filter(e => e.responseStatus >= 400).map(e => e.name);"
            )
            errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
            network = [
                m for m in (e["message"] for e in browser.get_log("performance"))
                if "Network.loadingFailed" in m
            ]
            shot = tmp_path / "report.png"
            browser.set_window_size(1400, browser.execute_script("return document.body.scrollHeight") + 40)
            assert browser.save_screenshot(str(shot))
        finally:
            browser.quit()
    assert len(widths) == 4  # 3 charts + 1 preview
    assert all(complete and width > 0 for _, complete, width in widths), widths
    assert not failed and not network, (failed, network)
    assert not errors, errors
    with PILImage.open(shot) as picture:
        assert picture.size[0] == 1400 and np.asarray(picture.convert("L")).std() > 5


def test_run_checks_the_expected_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--config", str(DATA / "semantic_nuclei.yaml"), "--workflow", "instance",
                 "--images", str(DATA / "dsb_nuclei.tif"), "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "SEMANTIC_SEG" in err and "INSTANCE_SEG" in err and "--workflow" in err
    assert not (tmp_path / "o").exists()


def test_extra_gt_ignored_only_when_asked(tmp_path: Path) -> None:
    """A Galaxy job mapped over images sees every GT: --gt-extra ignore uses the pair."""
    pred = tmp_path / "dsb_nuclei.tif"
    shutil.copy(DATA / "dsb_nuclei_mask.tif", pred)
    gts = [DATA / "dsb_nuclei_mask.tif", DATA / "nuclei_b_mask.tif"]
    strict = ["evaluate", "--workflow", "instance", "--pred", str(pred), "--gt", *map(str, gts)]
    assert main([*strict, "--out", str(tmp_path / "a")]) == 2
    assert main([*strict, "--out", str(tmp_path / "b"), "--gt-extra", "ignore", "--no-report"]) == 0
    table = pd.read_csv(tmp_path / "b" / "metrics" / "metrics.tsv", sep="\t")
    assert table["image"].tolist() == ["dsb_nuclei", "ALL"]
    assert table["f1@0.5"].tolist() == [1.0, 1.0]
    # an image without GT still fails
    lone = tmp_path / "lone.tif"
    shutil.copy(pred, lone)
    assert main(["evaluate", "--workflow", "instance", "--pred", str(lone), "--gt", *map(str, gts),
                 "--gt-extra", "ignore", "--out", str(tmp_path / "c")]) == 2  # fmt: skip


def test_large_volumes_are_previewed_thinned_plane_by_plane(tmp_path: Path) -> None:
    """A 3D result above the reader's voxel limit (a Zarr written by chunks) is read every
    n-th plane and pixel, one plane at a time; a missing ``.tif`` falls back to ``.zarr``."""
    from biapy_runner.io.chunked import create_zarr
    from biapy_runner.report.panels import Reader

    labels = np.arange(40 * 64 * 64, dtype=np.uint32).reshape(40, 64, 64)
    store = create_zarr(tmp_path / "vol.zarr", labels.shape, np.uint32, (16, 32, 32),
                        {"axes": "ZYX", "complete": True})  # fmt: skip
    store[...] = labels
    reader = Reader(3, max_voxels=40 * 64 * 64 // 8)
    thin = reader.labels(tmp_path / "vol.tif")
    assert reader.scale == 2 and thin.shape == (20, 32, 32)
    assert np.array_equal(thin, labels[::2, ::2, ::2])
    whole = Reader(3, max_voxels=1 << 20)
    assert np.array_equal(whole.labels(tmp_path / "vol.tif"), labels) and whole.scale == 1
