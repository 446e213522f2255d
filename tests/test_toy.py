"""Real-number checks of the toy experiments (quick settings, numpy Brian2 target)."""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.config import MODELS_DIR
from dfc_brian.experiments import toy
from dfc_brian.experiments.train import train_epoch
from dfc_brian.model.params import ConfigError

# the authors' toy configs (models/toy/fig1d.yaml, figS2_S4_*.yaml, fig3_* with analysis.gn_damping)
authors_configs = pytest.mark.skipif(
    not (MODELS_DIR / "toy" / "fig1d.yaml").is_file(), reason="the authors' toy configs are not merged yet"
)


class _Recorder:
    """Stands in for a Method: records which step ran on which minibatch."""

    def __init__(self, mode: str, extra_sleep: int = 2) -> None:
        self.training = {
            "method": "DFC",
            "q": "trained",
            "batch_size": 2,
            "extra_sleep": extra_sleep,
            "extra_sleep_mode": mode,
        }
        self.calls: list[tuple[str, tuple[float, ...]]] = []

    def feedback_step(self, X):
        self.calls.append(("sleep", tuple(X[:, 0])))
        return {}

    def train_step(self, X, y):
        self.calls.append(("forward", tuple(X[:, 0])))
        return {"loss": float(len(X)), "n_nonconverged": 1}


def test_train_epoch_runs_the_authors_order():
    X = np.arange(5.0)[:, None]
    m = _Recorder("epoch")
    out = train_epoch(m, X, X, m.training, np.random.default_rng(0), np.random.default_rng(1))
    kinds = [k for k, _ in m.calls]
    # one sleep epoch, one forward epoch, extra_sleep = 2 sleep epochs; 3 minibatches each
    assert kinds == ["sleep"] * 3 + ["forward"] * 3 + ["sleep"] * 6
    for j in range(4):  # every epoch covers every sample exactly once
        block = [x for _, b in m.calls[3 * j : 3 * j + 3] for x in b]
        assert sorted(block) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert out.n_nonconverged == 3 and out.n_samples == 5
    np.testing.assert_allclose(out.loss, 5.0 / 3.0)  # mean over minibatches of sizes 2, 2, 1
    # minibatch mode: train_step runs its own sleep phases; the epoch is forward steps only
    m = _Recorder("minibatch")
    train_epoch(m, X, X, m.training, np.random.default_rng(0), np.random.default_rng(1))
    assert [k for k, _ in m.calls] == ["forward"] * 3
    # fixed Q learns no feedback: no sleep-only epochs even in the authors' order
    m = _Recorder("epoch")
    m.training["q"] = "fixed"
    train_epoch(m, X, X, m.training, np.random.default_rng(0), np.random.default_rng(1))
    assert [k for k, _ in m.calls] == ["forward"] * 3


def test_feedback_curves_apply_overrides_then_the_varied_value():
    cfg = {
        "name": "x",
        "sleep": {"alpha_fb": 0.5, "k_p_fb": 0.0, "sigma": 0.01},
        "analysis": {"gn_damping": 0.0},
        "curves": {
            "fig_S3": {
                "vary": "sleep.alpha_fb",
                "values": [0.0, 1.0],
                "sleep": {"k_p_fb": 0.3},
                "analysis": {"gn_damping": 5.0},
            }
        },
    }
    curves = toy.feedback_curves(cfg, "fig_S3")
    assert [(lab, v) for lab, v, _ in curves] == [("alpha_fb=0", 0.0), ("alpha_fb=1", 1.0)]
    for _, v, c in curves:
        assert c["sleep"] == {"alpha_fb": v, "k_p_fb": 0.3, "sigma": 0.01}
        assert c["analysis"] == {"gn_damping": 5.0} and "curves" not in c
    assert cfg["sleep"]["k_p_fb"] == 0.0  # the input config is not modified
    with pytest.raises(ConfigError, match="curves.fig_S9"):
        toy.feedback_curves(cfg, "fig_S9")


@authors_configs
def test_fig1d_pretrains_Q_and_reaches_the_controller_steady_state():
    res = toy.fig1d(quick=True)
    S, T = res["r_L"].shape
    assert (S, T) == (3, 400) and res["u"].shape == (3, 400) and res["t"].shape == (400,)
    # the sleep phase aligns the xavier-normal Q with J^T and keeps the network stable
    qb, qa = res["q_before"], res["q_after"]
    assert qa["condition_2"] > qb["condition_2"] + 0.1
    assert qa["angle_Q_JT"] < qb["angle_Q_JT"] - 5 and qa["lambda_max"] < 0
    delta = np.abs(res["r_star"] - res["r_L_ff"])
    assert np.all(delta > 1e-3)  # the target differs from the feedforward output
    # at the end of 2 tau_u the output sits at r* - alpha u to within 10 % of the initial error
    assert np.all(res["steady_residual"] < 0.1 * delta)
    assert np.all(np.abs(res["e"][:, -1]) < 0.25 * np.abs(res["e"][:, 0]))


@authors_configs
def test_fig3_quick_metrics_shapes_and_ssa_identity(tmp_path):
    res = toy.fig3(("DFC-SSA", "DFC (fixed)", "DFA"), quick=True, seed=1)
    E = len(res["epochs"])
    assert E == 3
    assert res["config"]["gn_damping"] == {"DFC-SSA": 0.1, "DFC (fixed)": 0.1, "DFA": 0.0}
    for name, m in res["metrics"].items():
        for key in ("condition_2", "condition_1", "angle_MN", "angle_GN", "test_loss", "test_loss_full"):
            assert m[key].shape == (E,) and np.all(np.isfinite(m[key])), (name, key)
        assert np.all((m["condition_2"] > 0) & (m["condition_2"] <= 1 + 1e-9))
    # same data and initial weights for every method: equal losses before training
    l0 = {name: m["test_loss_full"][0] for name, m in res["metrics"].items()}
    assert max(l0.values()) - min(l0.values()) < 1e-12
    # DFC-SSA's update is the SSA update: angle 0
    np.testing.assert_allclose(res["metrics"]["DFC-SSA"]["angle_SSA"], 0.0, atol=1e-4)
    # fixed Q = weight product: stable and close to the SSA update
    assert np.all(res["metrics"]["DFC (fixed)"]["lambda_max"] < 0)
    assert np.all(res["metrics"]["DFC (fixed)"]["angle_SSA"] < 30)
    assert np.all(np.isnan(res["metrics"]["DFA"]["lambda_max"]))
    npz, js = toy.save(res, tmp_path / "fig3")
    arrays, meta = toy.load(tmp_path / "fig3")
    np.testing.assert_array_equal(arrays["metrics.DFA.angle_GN"], res["metrics"]["DFA"]["angle_GN"])
    assert meta["methods"] == ["DFC-SSA", "DFC (fixed)", "DFA"]


@authors_configs
def test_feedback_learning_S2_shares_one_run_and_aligns_Q():
    res = toy.feedback_learning(quick=True, figures=("fig_S2",), variants=("linear",))
    assert res["n_runs"] == {"linear": 1}  # the gamma curves differ in the reference only
    p = res["panels"]["fig_S2"]["linear"]
    np.testing.assert_array_equal(p["gamma"], [0.0, 0.1, 1.0, 5.0, 10.0, 100.0, 1000.0])
    assert p["angle"].shape == (7, 26)  # before training and after each of 25 epochs
    assert np.all(p["angle"][:, -1] < p["angle"][:, 0] - 10)  # Q aligns within 25 quick sleep epochs
    assert p["angle"][0, 0] != p["angle"][-1, 0]  # different references, same Q


@pytest.mark.parametrize("quick", [True])
def test_compartments_records_every_layer(quick):
    res = toy.compartments(quick=quick)
    for phase, T in (("controlled", 400), ("sleep", 250)):
        d = res[phase]
        for i in (1, 2, 3):
            for var in ("v_basal", "v_apical", "v_soma"):
                assert d[f"{var}.layer{i}"].shape == (T, 2)
    # the apical input is visible in the controlled phase and small (noise) in the sleep phase
    assert np.abs(res["controlled"]["v_apical.layer3"][-1]).max() > 0.05
    assert np.abs(res["sleep"]["v_apical.layer3"]).max() < 0.1


@authors_configs
def test_fig3_checkpoint_resume_is_identical_and_parts_merge(tmp_path):
    methods = ("DFC-SS", "DFA")
    kw = dict(quick=True, seed=1, n_train=64, tmax=60)
    full = toy.fig3(methods, epochs=2, **kw)
    # one epoch, then a second call from the checkpoint
    toy.fig3(methods, epochs=1, checkpoint_dir=tmp_path, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dfa.ckpt.npz", "dfc_ss.ckpt.npz"]
    resumed = toy.fig3(methods, epochs=2, checkpoint_dir=tmp_path, **kw)
    for m in methods:
        for k, v in full["metrics"][m].items():
            np.testing.assert_array_equal(resumed["metrics"][m][k], v, err_msg=f"{m} {k}")
    # a checkpoint of another run is refused
    with pytest.raises(ConfigError, match="another Fig. 3 run"):
        toy.fig3(methods, epochs=2, checkpoint_dir=tmp_path, **dict(kw, n_train=32))
    # parts run separately join to the whole
    a = toy.fig3(methods[:1], epochs=2, **kw)
    b = toy.fig3(methods[1:], epochs=2, **kw)
    toy.save(b, tmp_path / "part_b")
    b = toy.load_fig3(tmp_path / "part_b")
    merged = toy.merge_fig3([a, b])
    assert merged["methods"] == list(methods)
    for m in methods:
        np.testing.assert_array_equal(
            merged["metrics"][m]["test_loss_full"], full["metrics"][m]["test_loss_full"]
        )
    with pytest.raises(ConfigError, match="appears in two parts"):
        toy.merge_fig3([a, a])
    with pytest.raises(ConfigError, match="differ"):
        toy.merge_fig3([a, toy.fig3(methods[1:], epochs=1, **kw)])


# Fig. 3 curves of main at 4f868ea (before the loop moved into experiments/train.py), seed 0,
# quick, n_train = 200 (two minibatches of 128 and 72), T = 60; epochs 1 and 2.
FIG3_PINNED = {
    "DFC": {
        "train_loss": [66.85843719727694, 67.7960059715256],
        "test_loss_full": [67.80289138947661, 67.7710304829438],
        "angle_GN": [71.18632157824415, 71.15200775202005],
    },
    "DFC-SS": {
        "train_loss": [66.85679791185177, 67.78531794900452],
        "test_loss_full": [67.79417130399649, 67.75334334481788],
        "angle_GN": [73.49522059930712, 73.43737490130296],
    },
    "DFC (fixed)": {
        "train_loss": [66.85760023269538, 67.79000607172438],
        "test_loss_full": [67.79610599101781, 67.75751376108391],
        "angle_GN": [42.13908664958574, 42.14500261826448],
    },
    "DFA": {
        "train_loss": [66.84477101221532, 67.70157537422017],
        "test_loss_full": [67.7099928879011, 67.58374687194093],
        "angle_GN": [49.11473233660629, 49.13395114139437],
    },
}


@authors_configs
def test_fig3_two_epochs_reproduce_the_curves_of_the_own_loop():
    """toy.fig3 through the shared loop (train.pretrain_feedback / train_epoch) gives the curves
    its own loop gave: same forward and sleep minibatch streams, same order of steps."""
    res = toy.fig3(methods=tuple(FIG3_PINNED), epochs=2, quick=True, seed=0, n_train=200, tmax=60)
    for name, want in FIG3_PINNED.items():
        for key, values in want.items():
            got = res["metrics"][name][key][1:]
            np.testing.assert_allclose(got, values, rtol=1e-12, atol=0, err_msg=f"{name} {key}")
