"""An independent, deliberately plain NumPy rendering of the spec's Euler scheme.

One sample at a time, explicit loops, written from ``shared/spec/DFC_SPEC.md`` section 2
only. The engines are tested against it; it shares no code with the package.
"""

from __future__ import annotations

import numpy as np


def phi(name, v):
    if name == "tanh":
        return np.tanh(v)
    if name == "linear":
        return v.copy()
    if name == "relu":
        return np.maximum(v, 0.0)
    raise ValueError(name)


def simulate(
    W,
    b,
    Q,
    acts,
    x,
    r_star,
    *,
    k_p,
    alpha,
    dt,
    tcr,
    T,
    proactive=True,
    form="code",
    K_I=1.0,
    instantaneous=True,
    tau_A=None,
    sigma=0.0,
    xi=None,
):
    """Return per-step states of one sample: dict of lists over t of per-layer arrays.

    tau_A None: forward phase (v_A = Q u exactly). Otherwise the apical low-pass filter with
    noise: v_A += dt/tau_A (-v_A + Q u) + sigma_i sqrt(dt)/tau_A xi[t][i], where sigma is one
    number for every layer or a list with one std per layer.
    """
    L = len(W)
    v, vB, vA, r = [], [], [], []
    prev = x
    for i in range(L):
        vB.append(W[i] @ prev + b[i])
        v.append(vB[i].copy())
        r.append(phi(acts[i], v[i]))
        vA.append(np.zeros(len(b[i])))
        prev = r[i]
    n_out = len(b[-1])
    u_int = np.zeros(n_out)
    u = np.zeros(n_out)
    hist = {"v_soma": [], "v_basal": [], "v_apical": [], "r": [], "u": [], "u_int": [], "e": []}

    def store():
        hist["v_soma"].append([a.copy() for a in v])
        hist["v_basal"].append([a.copy() for a in vB])
        hist["v_apical"].append([a.copy() for a in vA])
        hist["r"].append([a.copy() for a in r])
        hist["u"].append(u.copy())
        hist["u_int"].append(u_int.copy())
        hist["e"].append(r_star - r[-1])

    store()
    for t in range(T - 1):
        e = r_star - r[-1]
        if form == "code":
            u_int_new = u_int + dt * (e - alpha * u)
            u_new = u_int_new + k_p * e
        else:
            u_int_new = u_int + dt * (e - alpha * u_int)
            u_new = K_I * u_int_new + k_p * e
        u_fb = u_new if proactive else u
        old_r = [a.copy() for a in r]
        for i in range(L):
            inp = (x if i == 0 else r[i - 1]) if instantaneous else (x if i == 0 else old_r[i - 1])
            vB[i] = W[i] @ inp + b[i]
            if tau_A is None:
                vA[i] = Q[i] @ u_fb
            else:
                s_i = sigma[i] if isinstance(sigma, (list, tuple)) else sigma
                noise = 0.0 if s_i == 0 else s_i * np.sqrt(dt) / tau_A * xi[t][i]
                vA[i] = vA[i] + dt / tau_A * (-vA[i] + Q[i] @ u_fb) + noise
            v[i] = v[i] + dt / tcr * (vA[i] + vB[i] - v[i])
            r[i] = phi(acts[i], v[i])
        u_int, u = u_int_new, u_new
        store()
    return hist


def dfc_update(hist, acts, x):
    """Time-averaged DFC update per layer: mean_t (phi(v) - phi(v_B)) r_{i-1}^T, and bias."""
    T = len(hist["v_soma"])
    L = len(acts)
    dW = [0.0] * L
    db = [0.0] * L
    for t in range(T):
        for i in range(L):
            delta = phi(acts[i], hist["v_soma"][t][i]) - phi(acts[i], hist["v_basal"][t][i])
            pre = x if i == 0 else hist["r"][t][i - 1]
            dW[i] = dW[i] + np.outer(delta, pre) / T
            db[i] = db[i] + delta / T
    return dW, db


def sleep_update(hists, sigma, beta=0.0, Q=None):
    """Feedback update of the sleep phase from recorded per-sample histories (spec section 2).

    Pairs the apical voltage at t with the control signal at t+1 for t = 0..T-2, averages
    over those T-1 pairs and over the samples, scales by 1/max(sigma, 0.01)^2 (sigma: the
    hidden layers' noise std) and subtracts beta Q.
    """
    n_samples = len(hists)
    T = len(hists[0]["u"])
    L = len(hists[0]["v_apical"][0])
    scale = 1.0 / max(sigma, 0.01) ** 2
    dQ = []
    for i in range(L):
        acc = 0.0
        for h in hists:
            for t in range(T - 1):
                acc = acc + np.outer(h["v_apical"][t][i], h["u"][t + 1])
        dQ_i = -scale * acc / (n_samples * (T - 1))
        if Q is not None:
            dQ_i = dQ_i - beta * Q[i]
        dQ.append(dQ_i)
    return dQ
