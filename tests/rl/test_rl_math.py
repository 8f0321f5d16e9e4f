"""alignkit.rl.objectives and alignkit.rl.monitor: every formula against numbers worked out by hand."""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from alignkit.rl import objectives as obj
from alignkit.rl.monitor import (
    GamingMonitor,
    MonitorPoint,
    SpecificationGamingWarning,
    best_of_n_curve,
    is_gaming,
    kl_best_of_n,
    linear_trend,
)


def test_group_advantages_by_hand() -> None:
    """Group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt((4 x 0.25) / 3) = 0.57735, so A = +-0.5 / (0.57735 + 1e-4)
    = +-0.86588. A group whose replies all score 2 gets 0, not 0/0."""
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    adv = obj.group_advantages(rewards)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert adv[0].tolist() == pytest.approx([a, -a, -a, a], abs=1e-6)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        obj.group_advantages(torch.tensor([[1.0]]))


def test_k3_by_hand_and_unbiased() -> None:
    """pi = 0.5, ref = 0.25: r = 0.5, k3 = 0.5 - log 0.5 - 1 = 0.193147. Averaged over tokens sampled from pi it
    estimates KL(pi || ref) exactly in expectation."""
    k3 = obj.kl_k3(torch.tensor([math.log(0.5), math.log(0.3)]), torch.tensor([math.log(0.25), math.log(0.3)]))
    assert k3.tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0], abs=1e-6)
    pi, ref = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    exact = float((pi * (pi / ref).log()).sum())
    g = torch.Generator().manual_seed(0)
    tokens = torch.multinomial(pi, 200_000, replacement=True, generator=g)
    estimate = float(obj.kl_k3(pi.log()[tokens], ref.log()[tokens]).mean())
    assert estimate == pytest.approx(exact, abs=5e-3)
    assert float(obj.kl_k3(pi.log()[tokens], ref.log()[tokens]).min()) >= 0


def test_clipped_surrogate_by_hand() -> None:
    """eps = 0.2. rho = e^0.5 = 1.6487, A = 1: -min(1.6487, 1.2) = -1.2, clipped. Same rho, A = -1:
    -min(-1.6487, -1.2) = 1.6487, not clipped (the pessimistic term is the unclipped one). rho = 0.5, A = -1:
    -min(-0.5, -0.8) = 0.8, clipped. rho = 1: -A."""
    logps = torch.tensor([0.5, 0.5, math.log(0.5), 0.0])
    old = torch.zeros(4)
    adv = torch.tensor([1.0, -1.0, -1.0, 2.0])
    loss, clipped = obj.clipped_surrogate(logps, old, adv, 0.2)
    assert loss.tolist() == pytest.approx([-1.2, math.exp(0.5), 0.8, -2.0], abs=1e-6)
    assert clipped.tolist() == [True, False, True, False]


def test_grpo_loss_by_hand() -> None:
    """One reply of two tokens (a third is padding), on-policy (rho = 1), A = 0.5, beta = 0.1; the reference gives
    the first token half the policy's probability (k3 = 0.193147) and the second the same (k3 = 0):
    loss = mean(-0.5 + 0.1 x 0.193147, -0.5 + 0) = -0.490343."""
    logps = torch.tensor([[math.log(0.5), math.log(0.2), -3.0]])
    ref = torch.tensor([[math.log(0.25), math.log(0.2), 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    losses, metrics = obj.grpo_loss(logps, logps, ref, torch.tensor([0.5]), mask, clip_eps=0.2, beta=0.1)
    k3 = 0.5 + math.log(2) - 1
    assert losses.tolist() == pytest.approx([(-0.5 + 0.1 * k3 - 0.5) / 2], abs=1e-6)
    assert metrics["kl"].tolist() == pytest.approx([k3], abs=1e-6)
    assert metrics["clip_fraction"].tolist() == [0.0]


def test_gae_three_steps_by_hand() -> None:
    """r = [0, 0, 1], V = [0.5, 0.6, 0.7], gamma = 0.9, lambda = 0.8 (gamma lambda = 0.72), V after the end = 0:
    delta_2 = 1 - 0.7 = 0.3                      A_2 = 0.3
    delta_1 = 0.9 x 0.7 - 0.6 = 0.03             A_1 = 0.03 + 0.72 x 0.3 = 0.246
    delta_0 = 0.9 x 0.6 - 0.5 = 0.04             A_0 = 0.04 + 0.72 x 0.246 = 0.21712
    returns = A + V = [0.71712, 0.846, 1.0]. A second row ends after two tokens: its padded third position holds
    junk that must not leak in, so A_1 = 2 - 0.2 = 1.8 and A_0 = 0.9 x 0.2 - 0.1 + 0.72 x 1.8 = 1.376."""
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.1, 0.2, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = obj.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert adv[0].tolist() == pytest.approx([0.21712, 0.246, 0.3], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.71712, 0.846, 1.0], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([1.376, 1.8, 0.0], abs=1e-6)
    assert ret[1].tolist() == pytest.approx([1.476, 2.0, 0.0], abs=1e-6)


def test_clipped_value_loss_by_hand() -> None:
    """clip = 0.2. V = 0.9, V_old = 0.5, R = 1: unclipped (0.1)^2 = 0.01, clipped V = 0.7 gives (0.3)^2 = 0.09; the
    max is 0.09, loss 0.045. V = 1, V_old = 0.5, R = 0: unclipped 1, clipped (0.7)^2 = 0.49: loss 0.5."""
    mask = torch.ones(1, 1)
    one = obj.clipped_value_loss(torch.tensor([[0.9]]), torch.tensor([[0.5]]), torch.tensor([[1.0]]), mask, 0.2)
    two = obj.clipped_value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[0.0]]), mask, 0.2)
    assert float(one) == pytest.approx(0.045, abs=1e-7)
    assert float(two) == pytest.approx(0.5, abs=1e-7)


def test_ppo_loss_combines_the_token_means() -> None:
    """On-policy, A = [1, -1] on two tokens (a third masked): policy loss mean(-1, 1) = 0; values at the returns
    with old values equal: value loss 0; then vf_coef x value loss shows up when the values are off by 0.1
    (0.5 x 0.01 = 0.005)."""
    logps = torch.tensor([[-1.0, -2.0, 0.0]])
    adv = torch.tensor([[1.0, -1.0, 5.0]])
    mask = torch.tensor([[1, 1, 0]])
    ret = torch.tensor([[0.3, 0.4, 0.0]])
    loss, m = obj.ppo_loss(logps, logps, adv, ret, ret, ret, mask, vf_coef=0.1)
    assert float(loss) == pytest.approx(0.0, abs=1e-7) and float(m["clip_fraction"]) == 0
    loss, m = obj.ppo_loss(logps, logps, adv, ret + 0.1, ret + 0.1, ret, mask, vf_coef=0.1)
    assert float(m["value_loss"]) == pytest.approx(0.005, abs=1e-6)
    assert float(loss) == pytest.approx(0.0005, abs=1e-7)


def test_masked_whiten() -> None:
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    out = obj.masked_whiten(values, mask)
    assert out[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)


def test_adaptive_kl_controller_by_hand() -> None:
    """Ziegler et al.: beta = 0.2, target 6, horizon 10000, 256 replies. KL 9: error clip(0.5) = 0.2, beta x
    (1 + 0.2 x 256 / 10000) = 0.201024. Then KL 3: error -0.5 -> -0.2, beta x (1 - 0.00512). Then KL 6.6: error
    0.1. No target: fixed."""
    ctl = obj.AdaptiveKLController(0.2, 6.0, 10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.201024, abs=1e-9)
    assert ctl.update(3.0, 256) == pytest.approx(0.201024 * (1 - 0.00512), abs=1e-9)
    assert ctl.update(6.6, 256) == pytest.approx(0.201024 * (1 - 0.00512) * (1 + 0.1 * 256 / 10000), abs=1e-9)
    fixed = obj.AdaptiveKLController(0.2, None, 10000)
    assert fixed.update(100.0, 256) == 0.2


# ---- the monitor ------------------------------------------------------------------------------


def test_kl_best_of_n_closed_form() -> None:
    """log n - (n - 1)/n: 0 at n = 1, log 2 - 1/2 = 0.193147 at 2, log 4 - 3/4 = 0.636294 at 4."""
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(2) == pytest.approx(0.193147, abs=1e-6)
    assert kl_best_of_n(4) == pytest.approx(0.636294, abs=1e-6)
    assert kl_best_of_n(64) == pytest.approx(math.log(64) - 63 / 64)


def test_best_of_n_curve_by_hand_and_by_enumeration() -> None:
    """Proxy [1, 2, 3, 4], gold [4, 3, 2, 1]. n = 1: the means, 2.5 and 2.5. n = 2: the k-th lowest proxy is the best
    of a random pair with probability k / 6 (k = 0..3): proxy (2 + 6 + 12) / 6 = 3.333, gold (3 + 4 + 3) / 6 = 1.667.
    n = 4: proxy 4, gold 1."""
    points = best_of_n_curve([[1.0, 2.0, 3.0, 4.0]], [[4.0, 3.0, 2.0, 1.0]])
    assert [p.step for p in points] == [1, 2, 4]
    assert [p.proxy for p in points] == pytest.approx([2.5, 20 / 6, 4.0])
    assert [p.gold for p in points] == pytest.approx([2.5, 10 / 6, 1.0])
    assert [p.kl for p in points] == pytest.approx([kl_best_of_n(n) for n in (1, 2, 4)])
    # against every n-subset of 6 samples, ties broken at random (tied samples share the gold in expectation)
    proxy, gold = [3.0, 1.0, 3.0, 2.0, 0.0, 1.0], [0.0, 1.0, 1.0, 5.0, 2.0, 3.0]
    for n in range(1, 7):
        total = 0.0
        subsets = list(itertools.combinations(range(6), n))
        for sub in subsets:
            top = max(proxy[i] for i in sub)
            tied = [gold[i] for i in sub if proxy[i] == top]
            total += sum(tied) / len(tied)
        (point,) = best_of_n_curve([proxy], [gold], ns=[n])
        assert point.gold == pytest.approx(total / len(subsets), abs=1e-9)


def test_linear_trend() -> None:
    change, t = linear_trend([0.0, 1.0, 2.0, 3.0])
    assert change == pytest.approx(3.0) and t == math.inf
    change, t = linear_trend([1.0, 1.0, 1.0])
    assert change == 0.0 and t == 0.0
    change, t = linear_trend([0.0, 1.0, 0.0, 1.0, 0.0])
    assert abs(t) < 1


def test_gaming_detection_on_synthetic_curves() -> None:
    """Flagged only where the proxy rises and the gold falls over the window; noise, joint rises and the early,
    rising half of a Gao-style curve are not."""
    steps = range(12)
    proxy = [0.1 * s for s in steps]
    gao_gold = [0.1 * s - 0.012 * s * s for s in steps]  # peaks at s ~ 4, then falls
    flags = [is_gaming(proxy[: k + 1], gao_gold[: k + 1], window=4, tolerance=0.02) for k in steps]
    assert not any(flags[:6]) and all(flags[8:])
    assert not is_gaming(proxy, proxy, window=4)  # both rise: the gold agrees
    assert not is_gaming(proxy[:3], [0.0, -1.0, -2.0], window=4)  # too few points
    g = torch.Generator().manual_seed(0)
    noise = (torch.randn(12, generator=g) * 0.05).tolist()
    assert not is_gaming([0.5 + n for n in noise], [0.5 - n for n in noise], window=5)
    # a small trend within the tolerance is not gaming
    assert not is_gaming(proxy, [-0.001 * s for s in steps], window=4, tolerance=0.02)


def test_monitor_warns_once_and_writes_json_and_svg(tmp_path: Path) -> None:
    mon = GamingMonitor(window=3, tolerance=0.01)
    with pytest.warns(SpecificationGamingWarning, match="step 3"):
        for s, (p, g) in enumerate([(0.1, 0.5), (0.2, 0.4), (0.3, 0.3), (0.4, 0.2)], start=1):
            mon.add(MonitorPoint(s, kl=0.1 * s, proxy=p, gold=g))
    assert mon.gaming_steps == [3, 4] and mon.first_gaming_step == 3
    best = mon.best_gold()
    assert best is not None and best.step == 1
    json_path, svg_path = mon.write(tmp_path)
    body = json.loads(json_path.read_text())
    assert body["first_gaming_step"] == 3 and body["best_gold_step"] == 1
    assert body["points"][1]["sqrt_kl"] == pytest.approx(math.sqrt(0.2))
    root = ET.fromstring(svg_path.read_text())
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2  # proxy and gold panels
    assert any("gaming" in (t.text or "") for t in root.iter(f"{ns}text"))
    # no gold: one panel, never gaming
    solo = GamingMonitor(window=3)
    for s in range(1, 6):
        assert not solo.add(MonitorPoint(s, kl=s, proxy=s))
    assert len(ET.fromstring(solo.svg()).findall(f"{ns}polyline")) == 1
