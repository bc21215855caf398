"""TOML model specs: parsing, the checks (each naming its key and the valid choices), data and models."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierpool as hp
from hierpool.workflow.spec import KINDS, ModelSpec, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "models").glob("*.toml"))

BASE = """
[data]
dataset = "dyestuff"
response = "yield_"
group = "batch"
family = "gaussian"

[variants.ri]
kind = "random_intercepts"
"""


def spec_text(extra: str = "", base: str = BASE) -> str:
    return textwrap.dedent(base) + textwrap.dedent(extra)


def problems_of(text, source=None) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source=source)
    return info.value.problems


# ------------------------------------------------------------------------------------------------------
def test_models_folder_has_the_specs():
    # the demo's spec (episodes) ships in the package only: `hierpool demo --print-spec` prints it
    assert {p.stem for p in MODELS} >= {"radon", "efron_morris"}
    assert "episodes" not in {p.stem for p in MODELS}


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_shipped_specs_parse(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.variants and all(v["kind"] in KINDS for v in spec.variants.values())
    assert spec.text == path.read_text()


def test_radon_spec_has_the_three_variants():
    spec = load_spec(ROOT / "models" / "radon.toml")
    assert [v["kind"] for v in spec.variants.values()] == list(KINDS)
    assert spec.data["family"] == "gaussian" and spec.data["predictors"] == ["basement", "uranium"]
    assert spec.variants["ridge"]["lam"] == 4.0


def test_episodes_spec_is_the_packaged_demo():
    from importlib import resources

    from hierpool.workflow.cli import demo_spec, demo_spec_text

    packaged = resources.files("hierpool.workflow.specs").joinpath("episodes.toml").read_text(encoding="utf-8")
    assert demo_spec_text() == packaged
    demo = demo_spec()
    assert demo.name == "episodes" and demo.text == packaged
    assert demo.data["simulate"] == "episodes" and demo.data["family"] == "bernoulli"
    assert demo.data["predictors"] == ["age", "los", "emergency"]
    assert isinstance(demo.data["parameters"]["seed"], int)


def test_defaults_are_filled_in():
    spec = parse_spec(spec_text())
    assert spec.name == "model"
    assert spec.sampling == {"draws": 1000, "tune": 1000, "chains": 4, "sampler": "auto", "seed": None}
    assert spec.output == {"dir": None, "ci_prob": 0.9, "top_k": None, "plots": True, "ppc": True, "loo": True}
    assert spec.data["predictors"] == []


def test_array_of_tables_variants_and_names():
    spec = parse_spec(spec_text(base=BASE.split("[variants.ri]")[0], extra="""
        [[variants]]
        kind = "random_intercepts"
        [[variants]]
        name = "ridge4"
        kind = "ridge_fixed_effects"
        lam = 4
    """))
    assert list(spec.variants) == ["random_intercepts", "ridge4"]
    assert spec.factory_kwargs("ridge4") == {"lam": 4}


def test_fit_kwargs_merge_sampling_and_variant_target_accept():
    spec = parse_spec(spec_text("""
        [variants.reg]
        kind = "regularized_hierarchical"
        penalty = "laplace"
        target_accept = 0.97
        [sampling]
        draws = 300
        seed = 5
        target_accept = 0.9
    """))
    assert spec.fit_kwargs("ri") == {"draws": 300, "tune": 1000, "chains": 4, "sampler": "auto",
                                     "random_seed": 5, "target_accept": 0.9}
    assert spec.fit_kwargs("reg")["target_accept"] == 0.97
    assert spec.factory_kwargs("reg") == {"penalty": "laplace"}


def test_empirical_bayes_variant():
    """``method = "empirical_bayes"`` on a random-intercepts variant: hp.fit gets the method and no sampler
    settings, the factory never sees it; other kinds refuse the key, and a bad value names the choices."""
    spec = parse_spec(spec_text("""
        [variants.eb]
        kind = "random_intercepts"
        method = "empirical_bayes"
        [sampling]
        draws = 300
        seed = 5
        target_accept = 0.9
    """))
    assert spec.fit_kwargs("eb") == {"draws": 300, "chains": 4, "random_seed": 5, "method": "empirical_bayes"}
    assert spec.factory_kwargs("eb") == {}
    with pytest.raises(SpecError, match="method"):
        parse_spec(spec_text("""
            [variants.r]
            kind = "ridge_fixed_effects"
            lam = 1.0
            method = "empirical_bayes"
        """))
    with pytest.raises(SpecError, match="full_bayes.*empirical_bayes"):
        parse_spec(spec_text("""
            [variants.eb]
            kind = "random_intercepts"
            method = "eb"
        """))


def test_with_sampling_overrides_and_checks():
    spec = parse_spec(spec_text())
    small = spec.with_sampling(draws=50, tune=None, seed=3)
    assert (small.sampling["draws"], small.sampling["tune"], small.sampling["seed"]) == (50, 1000, 3)
    assert spec.sampling["draws"] == 1000  # the original is unchanged
    with pytest.raises(SpecError, match=r"\[sampling\] chains = 0 must be an integer >= 1"):
        spec.with_sampling(chains=0)


# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra_or_text", "pattern"),
    [
        ('colour = "red"\n' + BASE, r"unknown top-level key 'colour'; valid keys: name, description, data"),
        (BASE.replace('family = "gaussian"', 'family = "gausian"'),
         r"\[data\] family = 'gausian' is not valid; valid choices: 'gaussian', 'bernoulli', 'binomial', 'poisson'"),
        (BASE.replace('family = "gaussian"', ""), r"\[data\] is missing the required key 'family'"),
        (BASE.replace('response = "yield_"', ""), r"\[data\] is missing the required key 'response'"),
        (BASE.replace('group = "batch"', 'group = "batch"\nweights = "w"'),
         r"\[data\] has unknown key 'weights'; valid keys: dataset, path, simulate"),
        (BASE.replace('dataset = "dyestuff"', 'dataset = "dyestuf"'),
         r"\[data\] dataset = 'dyestuf' is not valid; valid choices: 'radon'"),
        (BASE.replace('dataset = "dyestuff"', ""), r"\[data\] needs one of the keys dataset, path, simulate"),
        (BASE.replace('dataset = "dyestuff"', 'dataset = "dyestuff"\npath = "x.csv"'),
         r"gives dataset and path; give exactly one"),
        (BASE.replace('dataset = "dyestuff"', 'path = "x.xlsx"'), r"unknown file type; valid suffixes: .csv"),
        (BASE.replace('dataset = "dyestuff"', 'simulate = "episodes"\nparameters = {members = 5}'),
         r"parameters has unknown key 'members' for simulate = 'episodes'; valid keys: n_members, seed, tau"),
        (BASE.replace('dataset = "dyestuff"', 'simulate = "epsiodes"'),
         r"simulate = 'epsiodes' is not valid; valid choices: 'episodes', 'grouped'"),
        (BASE.replace('kind = "random_intercepts"', 'kind = "mixed"'),
         r"\[variants.ri\] kind = 'mixed' is not valid; valid choices: 'random_intercepts', 'ridge_fixed_effects'"),
        (BASE.replace('kind = "random_intercepts"', ""), r"\[variants.ri\] is missing the required key 'kind'"),
        (BASE + "lam = 2.0\n",
         r"\[variants.ri\] \(kind = 'random_intercepts'\) has unknown key 'lam'; valid keys: kind, priors"),
        (BASE + '[variants.reg]\nkind = "regularized_hierarchical"\npenalty = "elastic"\n',
         r"penalty = 'elastic' is not valid; valid choices: 'horseshoe', 'laplace', 'ridge'"),
        (BASE + '[variants.r]\nkind = "ridge_fixed_effects"\nlam = -1\n', r"lam = -1 must be a positive number"),
        (BASE + "priors = {tau = {sigma = 1}}\n", r"priors.tau = .* needs the key 'dist'"),
        (BASE + '[sampling]\nsampler = "stan"\n', r"\[sampling\] sampler = 'stan' is not valid; valid choices: 'auto'"),
        (BASE + "[sampling]\ndraws = 0\n", r"\[sampling\] draws = 0 must be an integer >= 1"),
        (BASE + "[sampling]\nwarmup = 10\n", r"\[sampling\] has unknown key 'warmup'; valid keys: draws, tune"),
        (BASE + "[output]\nci_prob = 90\n", r"ci_prob = 90 must be in the open interval \(0, 1\) \(use 0.9, not 90\)"),
        (BASE.split("[variants.ri]")[0], r"the spec has no \[variants\]"),
        (BASE.replace('family = "gaussian"', 'family = "binomial"'), r"family = 'binomial' needs the key 'trials'"),
        (BASE + 'exposure = "t"\n', r"unknown key 'exposure'"),
        ('[data\ndataset = "radon"', r"not valid TOML"),
    ],
)
def test_bad_specs_name_the_key_and_the_choices(extra_or_text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_spec(extra_or_text, source="bad.toml")


def test_all_problems_are_reported_together():
    text = BASE.replace('family = "gaussian"', 'family = "normal"').replace('kind = "random_intercepts"',
                                                                          'kind = "ri"') + "[sampling]\nchains = 0\n"
    probs = problems_of(text, source="x.toml")
    assert len(probs) == 3
    with pytest.raises(SpecError, match=r"^x.toml: invalid spec \(3 problems\):\n  - "):
        parse_spec(text, source="x.toml")


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


# ------------------------------------------------------------------------------------------------------
def test_missing_columns_are_named_with_the_data_columns():
    spec = parse_spec(textwrap.dedent(BASE).replace('response = "yield_"', 'response = "yield"')
                      .replace('group = "batch"', 'group = "batch"\npredictors = ["temp"]'))
    with pytest.raises(SpecError) as info:
        spec.validate()
    msg = str(info.value)
    assert "[data] response: column 'yield' is not in the data; the data's columns are: 'batch', 'yield_'" in msg
    assert "[data] predictors: column 'temp' is not in the data" in msg


def test_values_that_do_not_fit_the_family_are_reported():
    spec = parse_spec(BASE.replace('family = "gaussian"', 'family = "bernoulli"'))
    with pytest.raises(SpecError, match=r"\[data\]: the data do not fit the spec: .*yield_"):
        spec.validate()


def test_bad_prior_is_reported_with_its_variant():
    spec = parse_spec(BASE + 'priors = {tau = {dist = "HalfNormall", sigma = 1.0}}\n')
    with pytest.raises(SpecError, match=r"\[variants.ri\] \(kind = 'random_intercepts'\): .*HalfNormall.*valid "
                                        r"choices: .*HalfNormal"):
        spec.validate()


def test_validate_builds_every_model_with_its_settings():
    spec = parse_spec(spec_text("""
        priors = {tau = {dist = "HalfNormal", sigma = 50.0}, sigma = 40.0}
        [variants.ridge]
        kind = "ridge_fixed_effects"
        lam = 0.01
        [variants.reg]
        kind = "regularized_hierarchical"
        penalty = "ridge"
        tau_scale = 20.0
    """))
    gd, models = spec.validate()
    assert (gd.n_obs, gd.n_groups) == (30, 6)
    assert list(models) == ["ri", "ridge", "reg"]
    assert hp.describe(models["ri"]).settings["priors"] == {"tau": {"dist": "HalfNormal", "sigma": 50.0},
                                                           "sigma": 40.0}
    assert hp.describe(models["ridge"]).settings["lam"] == 0.01
    assert hp.describe(models["reg"]).settings["tau_scale"] == 20.0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_data_path_is_relative_to_the_spec_file(tmp_path, suffix):
    df = hp.datasets.simulate("poisson", n_groups=12, group_sizes=(2, 3), seed=3)
    df["years"] = np.random.default_rng(0).uniform(0.5, 2.0, len(df))
    sub = tmp_path / "data"
    sub.mkdir()
    (df.to_csv(sub / f"counts{suffix}", index=False) if suffix == ".csv"
     else df.to_parquet(sub / f"counts{suffix}"))
    spec_file = tmp_path / "specs" / "counts.toml"
    spec_file.parent.mkdir()
    spec_file.write_text(textwrap.dedent(f"""
        [data]
        path = "../data/counts{suffix}"
        response = "y"
        group = "group"
        predictors = ["x1"]
        family = "poisson"
        exposure = "years"
        [variants.ri]
        kind = "random_intercepts"
    """))
    spec = load_spec(spec_file)
    gd, _ = spec.validate()
    assert gd.n_obs == len(df) and gd.n_groups == 12
    np.testing.assert_allclose(gd.exposure, df["years"].to_numpy())
    assert spec.data_path() == spec_file.parent / f"../data/counts{suffix}"


def test_missing_data_file_is_reported(tmp_path):
    spec = parse_spec(BASE.replace('dataset = "dyestuff"', 'path = "gone.csv"'), source=tmp_path / "s.toml")
    with pytest.raises(SpecError, match=r"\[data\] path = 'gone.csv': file .*gone.csv' does not exist"):
        spec.validate()


def test_simulated_data_follow_the_parameters():
    spec = parse_spec(BASE.replace('dataset = "dyestuff"', 'simulate = "grouped"\nparameters = {family = '
                                   '"gaussian", n_groups = 9, group_sizes = 2, seed = 4}')
                      .replace('response = "yield_"', 'response = "y"').replace('group = "batch"', 'group = "group"'))
    df = spec.load_data()
    pd.testing.assert_frame_equal(df, hp.datasets.simulate("gaussian", n_groups=9, group_sizes=2, seed=4))
    # the spec holds no data: a second load simulates again, with the same seed
    pd.testing.assert_frame_equal(spec.load_data(), df)


def test_model_spec_is_a_dataclass_with_a_docstring_example():
    assert "Examples" in ModelSpec.__doc__


def test_sampling_min_ess_reaches_fit_and_max_rounds_needs_it():
    spec = parse_spec(spec_text("""
        [sampling]
        draws = 100
        min_ess = 400
        max_rounds = 3
    """))
    kw = spec.fit_kwargs("ri")
    assert kw["min_ess"] == 400 and kw["max_rounds"] == 3 and kw["draws"] == 100
    with pytest.raises(SpecError, match="max_rounds bounds the rounds of min_ess"):
        parse_spec(spec_text("""
            [sampling]
            max_rounds = 3
        """))
    with pytest.raises(SpecError, match="min_ess"):
        parse_spec(spec_text("""
            [sampling]
            min_ess = 0
        """))
