"""What `hierpool validate` and `hierpool run` refuse before anything is written: settings hp.fit would
refuse (sampler and keywords, per variant), settings with no effect, output folders that cannot be used, and
variant names that collide with the run's own files; an unexpected failure during a run is one error line.

Nothing here samples: every refusal happens before sampling, and the one run that gets further fails on
purpose in its first fit.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierpool as hp
from hierpool.inference.sampling import check_fit
from hierpool.workflow import cli, run
from hierpool.workflow.cli import main
from hierpool.workflow.schema import OUTPUT_FILES
from hierpool.workflow.spec import SpecError, load_spec, parse_spec

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    g = np.repeat([f"g{i}" for i in range(8)], 5)
    x = rng.normal(size=g.size)
    df = pd.DataFrame({"y": rng.normal(size=g.size) + 0.5 * x, "g": g, "x": x,
                       "b": rng.integers(0, 2, size=g.size)})
    path = tmp_path / "tiny.csv"
    df.to_csv(path, index=False)
    return path


def _spec(tmp_path: Path, body: str, *, data: str | None = None, name: str = "spec.toml") -> Path:
    _data(tmp_path)
    data = data or 'path = "tiny.csv"\nresponse = "y"\ngroup = "g"\npredictors = ["x"]\nfamily = "gaussian"'
    p = tmp_path / name
    p.write_text(f"[data]\n{data}\n" + textwrap.dedent(body))
    return p


BERNOULLI = 'path = "tiny.csv"\nresponse = "b"\ngroup = "g"\npredictors = ["x"]\nfamily = "bernoulli"'


def _refused(capsys, spec: Path, out: Path, *expected: str, extra=()) -> str:
    """validate and run both exit 2 with every expected text in the message, and run writes nothing."""
    for argv in (["validate", str(spec)], ["run", str(spec), "--out", str(out), *extra]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("hierpool: error: "), err
        for e in expected:
            assert e in err, (e, err)
    assert not out.exists()
    return err


# ------------------------------------------------------------------------------------------------------
# 1. the sampler and its keywords, checked per variant as hp.fit checks them
def test_gibbs_with_a_gaussian_family_is_refused_before_writing(tmp_path, capsys):
    spec = _spec(tmp_path, """
        [variants.ri]
        kind = "random_intercepts"
        [sampling]
        sampler = "gibbs"
    """)
    _refused(capsys, spec, tmp_path / "out", "[variants.ri] (kind = 'random_intercepts') cannot be fitted with "
             "sampler = 'gibbs' (from [sampling] or --sampler)", "needs a logit link",
             "Use sampler='auto', 'nutpie', 'pymc' or 'numpyro'")


def test_gibbs_from_the_command_line_is_refused_too(tmp_path, capsys):
    spec = _spec(tmp_path, '[variants.ri]\nkind = "random_intercepts"\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--sampler", "gibbs"]) == 2
    assert "sampler = 'gibbs' (from [sampling] or --sampler)" in capsys.readouterr().err
    assert not out.exists()


def test_a_sampler_that_is_not_installed_is_refused(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("numpyro", "jax")
                        else real(name, *a))
    spec = _spec(tmp_path, '[variants.ri]\nkind = "random_intercepts"\n[sampling]\nsampler = "numpyro"\n')
    _refused(capsys, spec, tmp_path / "out", "[variants.ri]", "sampler = 'numpyro'",
             "needs the package 'numpyro'; install it with")


def test_integrated_sampler_with_a_variant_target_accept_is_refused(tmp_path, capsys):
    spec = _spec(tmp_path, """
        [variants.ri]
        kind = "random_intercepts"
        target_accept = 0.95
        [variants.ridge]
        kind = "ridge_fixed_effects"
        lam = 2.0
        [sampling]
        sampler = "integrated"
    """)
    err = _refused(capsys, spec, tmp_path / "out",
                   "target_accept = 0.95 (from [variants.ri])",
                   "sampler='integrated' takes no NUTS or pymc.sample settings; got ['target_accept']")
    assert "[variants.ridge]" not in err  # the ridge has no target_accept: the integrated sampler runs it


def test_gibbs_on_a_logistic_model_and_nuts_settings_pass(tmp_path, capsys):
    """What hp.fit accepts is accepted: gibbs on bernoulli random intercepts, NUTS with target_accept."""
    spec = _spec(tmp_path, """
        [variants.ri]
        kind = "random_intercepts"
        [variants.reg]
        kind = "regularized_hierarchical"
        penalty = "ridge"
        [sampling]
        sampler = "gibbs"
    """, data=BERNOULLI)
    assert main(["validate", str(spec)]) == 0
    spec2 = _spec(tmp_path, '[variants.ri]\nkind = "random_intercepts"\ntarget_accept = 0.95\n'
                  '[sampling]\nsampler = "pymc"\n', name="nuts.toml")
    assert main(["validate", str(spec2)]) == 0
    capsys.readouterr()


def test_check_fit_raises_what_fit_raises_and_draws_nothing():
    df = hp.datasets.simulate_gaussian(n_groups=6, seed=1)
    model = hp.random_intercepts(df, y="y", group="group")
    for kw in ({"sampler": "gibbs"}, {"sampler": "integrated", "target_accept": 0.9},
               {"method": "empirical_bayes", "sampler": "pymc"}, {"min_ess": -1},
               {"draws": 0}, {"sampler": "integrated", "n_nodes": 10}):
        with pytest.raises((TypeError, ValueError)) as checked:
            check_fit(model, **kw)
        with pytest.raises(type(checked.value)) as fitted:
            hp.fit(model, progressbar=False, **kw)
        assert str(fitted.value) == str(checked.value)
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    assert check_fit(model, random_seed=rng, draws=10) is None
    assert rng.bit_generator.state == state  # fit draws one seed from a Generator; the check does not
    # every route stops where it would sample: NUTS (no compile), the integrated sampler, empirical Bayes, min_ess
    for kw in ({"sampler": "pymc"}, {"sampler": "auto"}, {"method": "empirical_bayes"}, {"min_ess": 400}):
        assert check_fit(model, **kw) is None


# ------------------------------------------------------------------------------------------------------
# 3. settings with no effect
@pytest.mark.parametrize(("variant", "expected"), [
    ('kind = "random_intercepts"\nlkj_eta = 3.0',
     "[variants.v] lkj_eta = 3.0 does not apply: it is the prior of the random slopes' correlation"),
    ('kind = "regularized_hierarchical"\npenalty = "laplace"\nlkj_eta = 2.0', "[variants.v] lkj_eta = 2.0"),
    ('kind = "regularized_hierarchical"\npenalty = "horseshoe"\nl1_ratio = 0.3',
     "[variants.v] l1_ratio = 0.3 does not apply with penalty = 'horseshoe': it is a setting of "
     "penalty = 'elastic_net' only"),
    ('kind = "regularized_hierarchical"\npenalty_scale = 2.0',
     "[variants.v] penalty_scale = 2.0 does not apply with penalty = 'horseshoe' (the default)"),
    ('kind = "regularized_hierarchical"\npenalty = "laplace"\nexpected_nonzero = 1',
     "expected_nonzero = 1 does not apply with penalty = 'laplace': it is a setting of penalty = 'horseshoe'"),
    ('kind = "regularized_hierarchical"\npenalty = "ridge"\nslab_scale = 1.0\nslab_df = 3.0',
     "slab_df = 3.0 does not apply with penalty = 'ridge'"),
    ('kind = "regularized_hierarchical"\npenalty = "ridge"\nl1_ratio = 0.5',
     "l1_ratio = 0.5 does not apply with penalty = 'ridge'"),
    ('kind = "random_intercepts"\nmethod = "empirical_bayes"\ntarget_accept = 0.95',
     "[variants.v] target_accept = 0.95 does not apply with method = 'empirical_bayes'"),
    ('kind = "random_intercepts"\nmethod = "empirical_bayes"\npriors = {tau = {dist = "HalfNormal", sigma = 1.0}}',
     "[variants.v] priors = {tau = {dist = 'HalfNormal', sigma = 1.0}} does not apply with method = "
     "'empirical_bayes'"),
    ('kind = "random_intercepts"\nmethod = "empirical_bayes"\ncentered = false',
     "centered = false does not apply with method = 'empirical_bayes'"),
], ids=["lkj-ri", "lkj-reg", "l1-horseshoe", "scale-default-horseshoe", "p0-laplace", "slab-ridge", "l1-ridge",
        "eb-target-accept", "eb-priors", "eb-centered"])
def test_settings_without_effect_are_refused(variant, expected, tmp_path, capsys):
    spec = _spec(tmp_path, f"[variants.v]\n{variant}\n")
    _refused(capsys, spec, tmp_path / "out", expected)


def test_settings_that_apply_are_accepted(tmp_path):
    for variant in ('kind = "regularized_hierarchical"\npenalty = "elastic_net"\nl1_ratio = 0.3\npenalty_scale = 2.0',
                    'kind = "regularized_hierarchical"\nexpected_nonzero = 1\nslab_scale = 1.0\nslab_df = 3.0',
                    'kind = "regularized_hierarchical"\npenalty = "laplace"\npenalty_scale = 2.0\ntau_scale = 1.0'):
        spec = load_spec(_spec(tmp_path, f"[variants.v]\n{variant}\n"))
        run.check(spec)
    slopes = 'path = "tiny.csv"\nformula = "y ~ x + (1 + x | g)"\nfamily = "gaussian"'
    spec = load_spec(_spec(tmp_path, '[variants.v]\nkind = "random_intercepts"\nlkj_eta = 2.0\n', data=slopes))
    assert spec.factory_kwargs("v") == {"lkj_eta": 2.0}


def test_sampling_settings_with_only_empirical_bayes_are_refused(tmp_path, capsys):
    spec = _spec(tmp_path, '[variants.eb]\nkind = "random_intercepts"\nmethod = "empirical_bayes"\n'
                 '[sampling]\ndraws = 50\ntune = 50\ntarget_accept = 0.9\n')
    _refused(capsys, spec, tmp_path / "out", "[sampling] tune = 50 (from [sampling] or --tune) applies to no variant",
             "[sampling] target_accept = 0.9 (from [sampling]) applies to no variant")
    plain = _spec(tmp_path, '[variants.eb]\nkind = "random_intercepts"\nmethod = "empirical_bayes"\n',
                  name="plain.toml")
    out = tmp_path / "out2"
    assert main(["run", str(plain), "--out", str(out), "--sampler", "pymc"]) == 2
    assert "[sampling] sampler = 'pymc' (from [sampling] or --sampler) applies to no variant" in capsys.readouterr().err
    assert not out.exists()
    assert main(["validate", str(plain)]) == 0


def test_sampling_settings_beside_empirical_bayes_are_noted(tmp_path, capsys):
    spec = _spec(tmp_path, '[variants.eb]\nkind = "random_intercepts"\nmethod = "empirical_bayes"\n'
                 '[variants.ri]\nkind = "random_intercepts"\n[sampling]\ntarget_accept = 0.9\n')
    assert main(["validate", str(spec)]) == 0
    assert ("note: variant eb (method = 'empirical_bayes') samples nothing: it does not use [sampling] "
            "target_accept, which apply to the other variants.") in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------
# 4. the output folder and the variants' names
def test_out_under_a_file_is_refused(tmp_path, capsys):
    spec = _spec(tmp_path, '[variants.ri]\nkind = "random_intercepts"\n')
    (tmp_path / "afile").write_text("")
    assert main(["run", str(spec), "--out", str(tmp_path / "afile" / "sub" / "deeper")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hierpool: error: --out ") and f"{str(tmp_path / 'afile')!r} is not a folder" in err
    assert (tmp_path / "afile").read_text() == ""


def test_a_file_where_a_variant_folder_goes_is_refused(tmp_path, capsys):
    spec = _spec(tmp_path, '[variants.ri]\nkind = "random_intercepts"\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "ri").write_text("x")
    for force in ([], ["--force"]):
        assert main(["run", str(spec), "--out", str(out), *force]) == 2
        assert "holds a file where a variant's folder goes: ri" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["ri"]


@pytest.mark.parametrize("name", [*OUTPUT_FILES, "Summary.TXT"])
def test_variant_names_of_output_files_are_refused(name, tmp_path, capsys):
    for body in (f'[variants."{name}"]\nkind = "random_intercepts"\n',
                 f'[[variants]]\nname = "{name}"\nkind = "random_intercepts"\n'):
        spec = _spec(tmp_path, body)
        _refused(capsys, spec, tmp_path / "out", f"[variants] name {name!r} is the name of a file `hierpool run` writes")


def test_run_output_files_are_the_reserved_names(tmp_path):
    spec = load_spec(_spec(tmp_path, '[variants.a]\nkind = "random_intercepts"\n'
                           '[variants.b]\nkind = "ridge_fixed_effects"\nlam = 1.0\n'))
    assert {f for f in run.planned_files(spec) if "/" not in f} == set(OUTPUT_FILES)


# ------------------------------------------------------------------------------------------------------
# 2. an unexpected failure during a run
def test_an_unexpected_failure_is_one_error_line(tmp_path, capsys, monkeypatch):
    spec = _spec(tmp_path, '[variants.ri]\nkind = "random_intercepts"\n[output]\nplots = false\n')
    out = tmp_path / "out"

    def boom(*args, **kwargs):
        raise RuntimeError("the sampler broke")

    monkeypatch.setattr(run, "fit_variant", boom)
    assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hierpool: error: RuntimeError: the sampler broke\n")
    assert "rerun with --debug" in err and f"{out}/ keeps what was written" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="the sampler broke"):
        main(["run", str(spec), "--out", str(out), "--quiet", "--force", "--debug"])


# ------------------------------------------------------------------------------------------------------
# 5. what the messages and the help say
def test_valid_keys_name_name_only_in_the_array_form():
    base = {"data": {"dataset": "radon", "response": "log_radon", "group": "county", "family": "gaussian"}}
    with pytest.raises(SpecError) as table:
        parse_spec({**base, "variants": {"ri": {"kind": "random_intercepts", "lam": 1}}})
    assert "has unknown key 'lam'; valid keys: kind, priors, intercept_at" in str(table.value)
    with pytest.raises(SpecError) as array:
        parse_spec({**base, "variants": [{"name": "ri", "kind": "random_intercepts", "lam": 1}]})
    assert "has unknown key 'lam'; valid keys: kind, name, priors, intercept_at" in str(array.value)


def test_help_and_docs_name_every_penalty_and_sampling_key():
    from hierpool.workflow import spec as spec_module

    for text in (cli._EPILOG, spec_module.__doc__):
        for word in ("elastic_net", "l1_ratio", "min_ess", "max_rounds", "lkj_eta", "empirical_bayes"):
            assert word in text, word
    assert "--debug" in cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
