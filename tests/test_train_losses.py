"""Training losses and metrics (train/losses.py, train/metrics.py): hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from biapy_runner.config.load import load_config
from biapy_runner.errors import ConfigError
from biapy_runner.train.losses import binary_ratio_weights, loss_for
from biapy_runner.train.metrics import metrics_for

IS = "PROBLEM.INSTANCE_SEG."


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def t(values, shape=None) -> torch.Tensor:
    out = torch.tensor(values, dtype=torch.float32)
    return out.reshape(shape) if shape else out


def semantic(*extra: str):
    return load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG", *extra])


def test_binary_semantic_ce_is_bce_on_logits() -> None:
    pred = t([[0.0, 2.0], [-1.0, 0.0]], (1, 1, 2, 2))
    target = t([[0, 1], [1, 0]], (1, 1, 2, 2))
    loss = loss_for(semantic(), [("class", "sigmoid")])(pred, target)
    # log(1 + e^x) - t x: ln 2, log(1 + e^-2), log(1 + e^1), ln 2
    expected = (softplus(0) + softplus(-2) + softplus(1) + softplus(0)) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_dice_of_half_probabilities() -> None:
    pred = torch.zeros(1, 1, 2, 2)
    target = t([[1, 0], [0, 0]], (1, 1, 2, 2))
    loss = loss_for(semantic("LOSS.TYPE=['DICE']"), [("class", "sigmoid")])(pred, target)
    # intersection 0.5, |P| + |T| = 2 + 1
    assert float(loss) == pytest.approx(1 - (1 + 1e-5) / (3 + 1e-5), rel=1e-6)


def test_multiclass_ce_with_manual_class_weights_and_dice_ce_mix() -> None:
    cfg = semantic(
        "DATA.N_CLASSES=3", "LOSS.CLASS_REBALANCE=manual", "LOSS.CLASS_WEIGHTS=[1, 1, 3]"
    )
    pred = torch.zeros(1, 3, 1, 2)
    pred[0, 0, 0, 0] = 2.0
    target = t([[0, 2]], (1, 1, 1, 2))
    a = math.log(1 + 2 * math.exp(-2))  # pixel 1: class 0 with logits (2, 0, 0)
    b = math.log(3)  # pixel 2: class 2 with equal logits
    loss = loss_for(cfg, [("c", "softmax")] * 3)(pred, target)
    assert float(loss) == pytest.approx((1 * a + 3 * b) / 4, rel=1e-6)
    mix = semantic("DATA.N_CLASSES=3", "LOSS.TYPE=['CE', 'DICE']", "LOSS.WEIGHTS=[1.0, 0.5]")
    ce = loss_for(semantic("DATA.N_CLASSES=3"), [("c", "softmax")] * 3)(pred, target)
    probs = torch.softmax(pred, 1)
    onehot = torch.zeros_like(probs)
    onehot[0, 0, 0, 0] = onehot[0, 2, 0, 1] = 1
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    union = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1 - torch.mean((2 * inter + 1e-5) / (union + 1e-5))
    assert float(loss_for(mix, [("c", "softmax")] * 3)(pred, target)) == pytest.approx(
        float(ce + 0.5 * dice), rel=1e-6
    )


def test_ignore_index_leaves_pixels_out() -> None:
    cfg = semantic("DATA.N_CLASSES=3", "LOSS.IGNORE_INDEX=2")
    pred = torch.zeros(1, 3, 1, 2)
    pred[0, 0, 0, 0] = 2.0
    loss = loss_for(cfg, [("c", "softmax")] * 3)(pred, t([[0, 2]], (1, 1, 1, 2)))
    assert float(loss) == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)


def test_binary_ratio_weights_favour_the_rare_side() -> None:
    w = binary_ratio_weights(t([[1, 0], [0, 0]]))
    assert w.tolist() == [[3.0, 1.0], [1.0, 1.0]]  # 25 % foreground: 0.75 / 0.25
    w = binary_ratio_weights(t([[1, 1], [1, 0]]))
    assert w.tolist() == [[1.0, 1.0], [1.0, 3.0]]
    assert binary_ratio_weights(torch.ones(2, 2)).tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_instance_loss_weights_channels_and_rebalances_binary_ones() -> None:
    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"{IS}DATA_CHANNELS=['F', 'D']",
            f"{IS}DATA_CHANNEL_WEIGHTS=(1, 0.5)",
        ],
    )
    pred = torch.zeros(1, 2, 2, 2)
    pred[0, 0, 0, 0] = 2.0
    target = torch.stack([t([[1, 0], [0, 0]]), t([[0.5, -1], [-1, -1]])])[None]
    # BCE weights: 3 on the object (a quarter of the pixels), 1 elsewhere
    f = (3 * softplus(-2) + 3 * softplus(0)) / (3 + 1 + 1 + 1)
    d = (0.25 + 1 + 1 + 1) / 4  # MSE of tanh(0) = 0
    loss = loss_for(cfg, [("F", "sigmoid"), ("D", "tanh")])(pred, target)
    assert float(loss) == pytest.approx(f + 0.5 * d, rel=1e-6)


def test_instance_distance_loss_is_masked_to_the_objects() -> None:
    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"{IS}DATA_CHANNELS=['B', 'Db']",
            f"{IS}CLASS_REBALANCE_WITHIN_CHANNELS=False",
        ],
    )
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.stack([t([[0, 1], [0, 1]]), t([[1.0, 0], [0.2, 0]])])[None]
    b = softplus(0)  # every logit 0
    db = (abs(0.5 - 1.0) + abs(0.5 - 0.2)) / 2  # L1 of sigmoid(0) on the two object pixels (B == 0)
    loss = loss_for(cfg, [("B", "sigmoid"), ("Db", "sigmoid")])(pred, target)
    assert float(loss) == pytest.approx(b + db, rel=1e-6)


def test_border_weights_multiply_the_binary_loss() -> None:
    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"{IS}DATA_CHANNELS=['F']",
            f"{IS}CLASS_REBALANCE_WITHIN_CHANNELS=False",
            f"{IS}BORDER_EXTRA_WEIGHTS=unet-like",
        ],
    )
    target = torch.stack([t([[1, 0], [0, 0]]), t([[0, 2], [0, 0]])])[None]
    loss = loss_for(cfg, [("F", "sigmoid")])(torch.zeros(1, 1, 2, 2), target)
    assert float(loss) == pytest.approx(2 * softplus(0) / 2, rel=1e-6)  # sum(w * l) / sum(w)


def test_n2v_loss_is_the_mse_at_the_masked_pixels() -> None:
    cfg = load_config(None, ["PROBLEM.TYPE=DENOISING"])
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0, 0, 0] = 2.0
    target[0, 1, 0, 0] = target[0, 1, 1, 1] = 1.0
    loss = loss_for(cfg, [("out", "linear")])(torch.ones(1, 1, 2, 2), target)
    assert float(loss) == pytest.approx(((2 - 1) ** 2 + (0 - 1) ** 2) / 2)


def test_restoration_loss_is_the_weighted_sum() -> None:
    cfg = load_config(
        None, ["PROBLEM.TYPE=SUPER_RESOLUTION", "LOSS.TYPE=['MAE', 'MSE']", "LOSS.WEIGHTS=[1, 0.5]"]
    )
    pred, target = t([[0.0, 1.0]], (1, 1, 1, 2)), t([[1.0, 3.0]], (1, 1, 1, 2))
    assert float(loss_for(cfg, [("o", "linear")])(pred, target)) == pytest.approx(1.5 + 0.5 * 2.5)
    default = load_config(None, ["PROBLEM.TYPE=IMAGE_TO_IMAGE"])
    assert float(loss_for(default, [("o", "linear")])(pred, target)) == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="VGG"):
        loss_for(
            load_config(None, ["PROBLEM.TYPE=SELF_SUPERVISED", "LOSS.TYPE=['VGG']"]),
            [("o", "linear")],
        )


def test_classification_and_detection_losses() -> None:
    cl = load_config(None, ["PROBLEM.TYPE=CLASSIFICATION", "DATA.N_CLASSES=3"])
    pred = t([[2.0, 0.0, 0.0]])
    assert float(loss_for(cl, [])(pred, torch.tensor([0]))) == pytest.approx(
        math.log(1 + 2 * math.exp(-2))
    )
    det = load_config(None, ["PROBLEM.TYPE=DETECTION"])
    target = t([[1, 0], [0, 0]], (1, 1, 2, 2))
    loss = loss_for(det, [("points", "sigmoid")])(torch.zeros(1, 1, 2, 2), target)
    assert float(loss) == pytest.approx(math.log(2) * 6 / 4)  # BCE mean with weights 3, 1, 1, 1


@pytest.mark.parametrize(
    "overrides, channels, target_channels",
    [
        (["PROBLEM.TYPE=SEMANTIC_SEG"], [("c", "sigmoid")], 1),
        (
            ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS=['F','C','Dc','H','V']"],
            [
                ("F", "sigmoid"),
                ("C", "sigmoid"),
                ("Dc", "linear"),
                ("H", "linear"),
                ("V", "linear"),
            ],
            5,
        ),
        (["PROBLEM.TYPE=DENOISING"], [("o", "linear")], 2),
    ],
)
def test_gradients_reach_every_output_channel(overrides, channels, target_channels) -> None:
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    pred = torch.randn(2, len(channels), 6, 6, requires_grad=True)
    target = (torch.rand(2, target_channels, 6, 6) > 0.5).float()
    loss = loss_for(cfg, channels)(pred, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert (pred.grad.abs().sum(dim=(0, 2, 3)) > 0).all()


def test_unsupported_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="N_CLASSES"):
        loss_for(
            load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", "DATA.N_CLASSES=3"]),
            [("F", "sigmoid")] * 2,
        )
    with pytest.raises(ConfigError, match="SEMANTIC_SEG"):
        loss_for(semantic("LOSS.TYPE=['MAE']"), [("c", "sigmoid")])
    with pytest.raises(ConfigError, match="CLASS_WEIGHTS"):
        loss_for(semantic("LOSS.CLASS_REBALANCE=manual"), [("c", "sigmoid")])


# --------------------------------------------------------------------------- metrics


def test_semantic_iou_binary_and_multiclass() -> None:
    m = metrics_for(semantic(), [("c", "sigmoid")])
    assert list(m) == ["IoU"]
    pred = t([[3.0, 3.0], [-3.0, -3.0]], (1, 1, 2, 2))
    assert m["IoU"](pred, t([[1, 0], [1, 0]], (1, 1, 2, 2))) == pytest.approx(1 / 3)
    m3 = metrics_for(semantic("DATA.N_CLASSES=3"), [("c", "softmax")] * 3)
    logits = torch.zeros(1, 3, 1, 3)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 0, 2] = 1
    # classes: pred (0, 1, 1) vs truth (0, 1, 2): IoU 1, 1/2, 0 -> mean over the classes present
    assert m3["IoU"](logits, t([[0, 1, 2]], (1, 1, 1, 3))) == pytest.approx((1 + 0.5 + 0) / 3)


def test_instance_metrics_are_named_per_channel() -> None:
    cfg = load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS=['F','Db']"])
    m = metrics_for(cfg, [("F", "sigmoid"), ("Db", "sigmoid")])
    assert list(m) == ["IoU (F channel)", "L1 (Db channel)"]
    pred = torch.zeros(1, 2, 1, 2)
    pred[0, 0, 0, 0] = 5
    target = torch.stack([t([[1, 1]]), t([[1.0, 0.0]])])[None]
    assert m["IoU (F channel)"](pred, target) == pytest.approx(0.5)
    assert m["L1 (Db channel)"](pred, target) == pytest.approx(0.5)  # |0.5 - 1| and |0.5 - 0|


def test_restoration_and_classification_metrics() -> None:
    sr = metrics_for(load_config(None, ["PROBLEM.TYPE=SUPER_RESOLUTION"]), [("o", "linear")])
    assert list(sr) == ["PSNR", "MAE", "MSE", "SSIM"]
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4] = 1
    pred = target + 0.1
    assert sr["PSNR"](pred, target) == pytest.approx(20.0, rel=1e-5)  # 10 log10(1 / 0.01)
    assert sr["MAE"](pred, target) == pytest.approx(0.1, rel=1e-5)
    dn = metrics_for(load_config(None, ["PROBLEM.TYPE=DENOISING"]), [("o", "linear")])
    assert list(dn) == ["MAE", "MSE"]
    n2v_target = torch.zeros(1, 2, 2, 2)
    n2v_target[0, 0, 0, 0], n2v_target[0, 1, 0, 0] = 3.0, 1.0
    assert dn["MAE"](torch.ones(1, 1, 2, 2), n2v_target) == pytest.approx(2.0)  # masked pixel only
    cl = metrics_for(
        load_config(
            None,
            [
                "PROBLEM.TYPE=CLASSIFICATION",
                "DATA.N_CLASSES=6",
                "TRAIN.METRICS=['accuracy', 'top-5-accuracy']",
            ],
        ),
        [],
    )
    logits = torch.eye(6)[:4] + torch.linspace(0, 0.1, 6)
    assert cl["Accuracy"](logits, torch.tensor([0, 1, 3, 3])) == pytest.approx(0.75)
    assert cl["Top-5-accuracy"](logits, torch.tensor([0, 1, 0, 0])) == pytest.approx(0.5)


def test_flow_channels_are_compared_with_five_times_the_unit_flows_and_labels_are_skipped() -> None:
    from biapy_runner.train.targets import make_targets

    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"{IS}DATA_CHANNELS=['Gv','Gh']",
            f"{IS}BORDER_EXTRA_WEIGHTS=unet-like",
        ],
    )
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[2:7, 2:8] = 1
    target = torch.from_numpy(make_targets(cfg, labels))[None]
    assert target.shape[1] == 4  # Gv, Gh, We, I
    w = target[:, 2:3]
    loss = loss_for(cfg, [("Gv", "linear"), ("Gh", "linear")])(torch.zeros(1, 2, 10, 10), target)
    expected = sum(
        float(((5 * target[:, c : c + 1]) ** 2 * w).sum() / target[:, 0].numel()) for c in (0, 1)
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    m = metrics_for(cfg, [("Gv", "linear"), ("Gh", "linear")])
    assert list(m) == ["L1 (Gv channel)", "L1 (Gh channel)"]
    assert m["L1 (Gv channel)"](5 * target[:, :2], target) == pytest.approx(0.0)
