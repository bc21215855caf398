"""Plots return a matplotlib Figure with the expected axes and artists (Agg backend, no sampling)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fake_fits import make_fit, staircase  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

import hierpool as hp  # noqa: E402


@pytest.fixture(scope="module")
def dt():
    rng = np.random.default_rng(1)
    J = 8
    ge = rng.normal(size=(2, 100, J)) * 0.4 + np.linspace(-2, 2, J)
    tau = np.abs(rng.normal(1.0, 0.1, size=(2, 100)))
    sigma = np.abs(rng.normal(1.5, 0.1, size=(2, 100)))
    return make_fit(data=staircase(J), group_effect=ge, intercept=0.5, tau=tau, sigma=sigma)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_shrinkage_plot(dt):
    fig = hp.plots.shrinkage_plot(dt)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    left, right = fig.axes
    kinds = [type(c) for c in left.collections]
    assert kinds.count(Quiver) == 1 and kinds.count(PathCollection) == 1
    scatter = next(c for c in left.collections if isinstance(c, PathCollection))
    tab = hp.shrinkage(dt)
    np.testing.assert_allclose(scatter.get_offsets(), tab[["raw_mean", "estimate"]].to_numpy())
    sizes = scatter.get_sizes()
    assert np.all(np.diff(sizes[np.argsort(tab["n"])]) > 0)  # point size grows with n
    assert len(left.lines) == 2  # no-pooling diagonal and the overall mean
    assert left.lines[1].get_ydata()[0] == pytest.approx(tab.attrs["overall"])
    # right: rho against n with the gaussian theory curve at the posterior medians
    assert len(right.collections) == 1 and len(right.lines) == 1
    x, y = right.lines[0].get_data()
    t, s = tab.attrs["tau"], tab.attrs["sigma"]
    np.testing.assert_allclose(y, t**2 / (t**2 + s**2 / x))


def test_shrinkage_plot_from_table_on_given_axes(dt):
    tab = hp.shrinkage(dt)
    fig, ax = plt.subplots()
    out = hp.plots.shrinkage_plot(tab, ax=ax)
    assert out is fig and len(fig.axes) == 1 and len(ax.collections) == 2
    with pytest.raises(ValueError, match="lacks columns"):
        hp.plots.shrinkage_plot(tab.drop(columns="rho"))
    with pytest.raises(TypeError, match="DataTree"):
        hp.plots.shrinkage_plot([1, 2])


def test_caterpillar(dt):
    fig = hp.plots.caterpillar(dt, top=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    segs = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segs) == 1 and len(segs[0].get_segments()) == 5
    ranks = hp.rank_groups(dt).head(5)
    assert [t.get_text() for t in ax.get_yticklabels()] == ranks["group"].tolist()
    np.testing.assert_allclose(ax.lines[0].get_xdata(), ranks["rank_mean"])
    for seg, lo, hi in zip(segs[0].get_segments(), ranks["rank_low"], ranks["rank_high"], strict=True):
        assert (seg[0, 0], seg[1, 0]) == (lo, hi)
    full = hp.plots.caterpillar(hp.rank_groups(dt, ci_prob=0.5))
    assert len(full.axes[0].get_yticks()) == 8  # fewer groups than the default top=30: all, no "best k"
    assert "best" not in full.axes[0].get_title()


def test_caterpillar_default_is_readable():
    """450 members: the default draws 30 (the title says so), top=None every group (issue 16)."""
    rng = np.random.default_rng(0)
    tab = pd.DataFrame({"group": [f"m{i}" for i in range(450)], "rank_mean": rng.permutation(450) + 1.0})
    tab["rank_low"], tab["rank_high"] = tab["rank_mean"] - 5, tab["rank_mean"] + 5
    fig = hp.plots.caterpillar(tab)
    assert len(fig.axes[0].get_yticks()) == 30 and fig.get_size_inches()[1] < 9
    assert "best 30 of 450" in fig.axes[0].get_title()
    assert len(hp.plots.caterpillar(tab, top=None).axes[0].get_yticks()) == 450
    with pytest.raises(ValueError, match="top must be a positive integer"):
        hp.plots.caterpillar(tab, top=0)


def test_ridge_path_plot(dt):
    fig = hp.plots.ridge_path_plot(dt, n_groups=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    # 4 group paths + implied lam + overall mean; one shaded interval
    assert len(ax.lines) == 6 and len(ax.patches) == 1
    path = hp.ridge_path(dt)
    assert ax.lines[4].get_xdata()[0] == pytest.approx(path.attrs["implied_lam"])
    fig2 = hp.plots.ridge_path_plot(path, groups=["g0", "g7"])
    assert len(fig2.axes[0].lines) == 4
    with pytest.raises(ValueError, match="not groups of this fit"):
        hp.plots.ridge_path_plot(path, groups=["nope"])
