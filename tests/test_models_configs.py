"""Every YAML config in models/ loads and validates; spot checks of the authors' numbers."""

from __future__ import annotations

import pytest

from dfc_brian.config import MODELS_DIR, load_config
from dfc_brian.experiments import train as T
from dfc_brian.model.params import ModelParams

CONFIGS = sorted(p for p in MODELS_DIR.rglob("*.yaml") if p.parent.name != "spiking")  # spiking: own test
ROWS = ("bp", "dfc", "dfc_ss", "dfc_ssa", "dfc_fixed", "dfc_ss_fixed", "dfc_ssa_fixed", "dfa")
COLUMNS = ("mnist", "fashion_mnist", "mnist_autoencoder", "mnist_trainloss")


def cfg(name: str) -> dict:
    return load_config(MODELS_DIR / f"{name}.yaml")


def test_all_table1_cells_and_toy_configs_exist():
    names = {p.relative_to(MODELS_DIR).with_suffix("").as_posix() for p in CONFIGS}
    for c in COLUMNS:
        for r in ROWS:
            assert f"table1/{c}_{r}" in names
    for r in ROWS:
        assert f"toy/fig3_{r}" in names
    assert "toy/demo" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(MODELS_DIR).as_posix())
def test_config_validates(path):
    c = load_config(path)
    assert c["name"] == path.stem
    params = ModelParams.from_dict(c)  # raises ConfigError on any bad model/controller/sleep value
    tr = T.validate_training(c)
    d = T.validate_data(c)
    for key in ("lr", "adam_eps", "lr_fb", "lr_fb_pretrain", "wd_fb"):
        if key in c["training"]:
            assert isinstance(c["training"][key], float), f"{key} parsed as {c['training'][key]!r}"
    if d["dataset"] == "student_teacher":
        assert (params.network.sizes[0], params.network.n_out) == (d["n_in"], d["n_out"])
    else:
        assert params.network.sizes[0] == 784
        assert params.network.n_out == (784 if d["dataset"] == "mnist_autoencoder" else 10)
        assert params.network.loss == ("mse" if d["dataset"] == "mnist_autoencoder" else "ce")
    if "table1" in c:
        col, row = c["table1"]["column"], c["table1"]["row"]
        assert path.stem == f"{col}_{row.lower().replace('-', '_')}"
        assert tr["epochs"] == (25 if col == "mnist_autoencoder" else 100)
        assert (d["report"] == "final_train_loss") == (col == "mnist_trainloss")
    try:
        from dfc_brian.engines.methods import validate_training
    except ImportError:
        return
    validate_training(c["training"])  # the methods' own check of the training keys


def test_authors_numbers_mnist_dfc():
    c = cfg("table1/mnist_dfc")
    p = ModelParams.from_dict(c)
    assert p.controller.target_stepsize == 0.0779 and p.controller.tmax == 1000
    assert (p.controller.k_p, p.controller.alpha, p.controller.dt, p.controller.tcr) == (
        2.0,
        1.39e-3,
        0.02,
        0.2,
    )
    assert (p.sleep.sigma, p.sleep.k_p_fb, p.sleep.alpha_fb, p.sleep.dt_fb) == (
        1.52e-3,
        0.157,
        0.613,
        2.03e-3,
    )
    assert (p.sleep.tmax_fb, p.sleep.tcr_fb, p.sleep.tau_A) == (48, 6.3e-3, 0.325)
    t = c["training"]
    assert (t["lr"], t["adam_eps"], t["lr_fb"], t["lr_fb_pretrain"], t["wd_fb"]) == (
        1.19e-3,
        9.4e-8,
        5.27e-4,
        3.17e-4,
        1e-3,
    )
    assert (t["epochs_fb"], t["batch_size"], t["adam_betas"], t["clip"]) == (10, 128, [0.99, 0.99], 1.0)
    assert (t["method"], t["q"]) == ("DFC", "trained")
    # the train-loss column reuses the MNIST values
    tl = cfg("table1/mnist_trainloss_dfc")
    assert {k: tl[k] for k in ("controller", "sleep", "training")} == {
        k: c[k] for k in ("controller", "sleep", "training")
    }


def test_authors_numbers_other_columns():
    f = ModelParams.from_dict(cfg("table1/fashion_mnist_dfc"))
    assert (f.controller.target_stepsize, f.controller.alpha, f.controller.tmax) == (0.0561, 2.06e-4, 300)
    # sleep tuple read in the MNIST order (k_p_fb, alpha_fb, dt_fb, T_fb, tcr_fb, tau_A)
    assert (
        f.sleep.k_p_fb,
        f.sleep.alpha_fb,
        f.sleep.dt_fb,
        f.sleep.tmax_fb,
        f.sleep.tcr_fb,
        f.sleep.tau_A,
    ) == (6.4e-3, 0.234, 3.1e-3, 34, 5.5e-3, 0.135)
    assert f.sleep.sigma == 2.45e-3
    a_cfg = cfg("table1/mnist_autoencoder_dfc")
    a = ModelParams.from_dict(a_cfg)
    assert a.network.sizes == (784, 256, 32, 256, 784)
    assert a.network.activations == ("tanh", "linear", "tanh", "linear")
    assert (a.controller.target_stepsize, a.controller.alpha, a.sleep.tmax_fb, a.sleep.tau_A) == (
        0.0203,
        0.0369,
        60,
        0.273,
    )
    assert (a_cfg["training"]["lr"], a_cfg["training"]["epochs_fb"], a_cfg["training"]["lr_fb"]) == (
        9.21e-3,
        15,
        1.23e-5,
    )
    fx = cfg("table1/mnist_dfc_fixed")
    p = ModelParams.from_dict(fx)
    assert (p.controller.target_stepsize, p.controller.alpha, p.controller.tmax) == (0.1, 2.47e-4, 500)
    assert (fx["training"]["lr"], fx["training"]["q"]) == (6.04e-4, "fixed")
    lrs = {
        c: (cfg(f"table1/{c}_bp")["training"]["lr"], cfg(f"table1/{c}_dfa")["training"]["adam_eps"])
        for c in COLUMNS
    }
    assert lrs == {
        "mnist": (2.98e-4, 2.5e-8),
        "fashion_mnist": (5.44e-4, 3.3e-7),
        "mnist_autoencoder": (1.37e-3, 5.2e-8),
        "mnist_trainloss": (2.98e-4, 2.5e-8),
    }


def test_fig3_toy_numbers():
    c = cfg("toy/fig3_dfc")
    p = ModelParams.from_dict(c)
    assert p.network.sizes == (15, 10, 10, 5)
    assert (p.controller.k_p, p.controller.alpha, p.controller.dt, p.controller.tcr, p.controller.tmax) == (
        1.5,
        0.0015,
        0.005,
        0.2,
        1000,
    )
    assert (
        p.sleep.sigma,
        p.sleep.alpha_fb,
        p.sleep.k_p_fb,
        p.sleep.dt_fb,
        p.sleep.tmax_fb,
        p.sleep.tcr_fb,
        p.sleep.tau_A,
    ) == (0.01, 0.25, 0.1, 0.002, 50, 0.01, 0.3)
    t = c["training"]
    assert (t["optimizer"], t["lr"], t["epochs"], t["batch_size"], t["wd_fb"]) == (
        "sgd",
        1.0,
        300,
        128,
        0.025,
    )
    demo = ModelParams.from_dict(cfg("toy/demo"))
    assert demo.controller.dt <= demo.controller.tcr and demo.controller.tmax <= 500
