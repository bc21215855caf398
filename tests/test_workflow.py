"""The workflow layer: the spec schema takes its choices from where the package defines them, its errors
name key, value and choices; the pipeline's cheap steps; and the command line refuses a bad spec or an
existing output folder before importing PyMC, ArviZ or the analysis layer (issue 16)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hierpool.core import names as N
from hierpool.workflow import run, schema
from hierpool.workflow.spec import KINDS, SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]
DATA = {"dataset": "dyestuff", "response": "yield_", "group": "batch", "family": "gaussian"}
#: Modules a refused run must not import: the sampling stack, ArviZ and hierpool's layers above the data.
HEAVY = ("pymc", "pytensor", "arviz", "arviz_base", "arviz_stats", "matplotlib", "hierpool.models",
         "hierpool.inference", "hierpool.analysis", "hierpool.plots")


def spec_dict(**variant) -> dict:
    return {"data": dict(DATA), "variants": {"v": {"kind": "random_intercepts", **variant}}}


def problems(raw) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return info.value.problems


# ------------------------------------------------------------------------------------------------------
def test_kinds_are_the_variants_and_their_settings_the_factories_keywords():
    from hierpool.models import factories

    assert tuple(KINDS) == tuple(schema.KIND_MODELS) == N.VARIANTS
    data_keywords = {"data", "y", "group", "predictors", "family", "trials", "exposure", "formula", "se", "slopes"}
    for kind, model in schema.KIND_MODELS.items():
        keywords = set(inspect.signature(getattr(factories, kind)).parameters) - data_keywords
        # name, target_accept and method (hp.fit's): not the factory's
        settings = set(model.model_fields) - {"kind", "name", "target_accept", "method"}
        assert keywords == settings, kind  # the factory's; every factory setting can be given, nothing else
        assert set(KINDS[kind]) - {"method"} <= settings


@pytest.mark.parametrize("choice", ["auto", True, False, "integrated"])
def test_every_collapse_choice_of_the_factories_is_accepted(choice):
    from hierpool.models.collapse import COLLAPSE_CHOICES

    assert choice in COLLAPSE_CHOICES  # the choices are the factories' own constant
    assert parse_spec(spec_dict(collapse=choice)).factory_kwargs("v") == {"collapse": choice}


@pytest.mark.parametrize("value", [1, 0, "yes", "Auto", 1.0])
def test_collapse_refuses_look_alikes_and_lists_the_choices(value):
    assert problems(spec_dict(collapse=value)) == [
        f"[variants.v] collapse = {value!r} is not valid; valid choices: 'auto', true, false, 'integrated'."]


@pytest.mark.parametrize(
    ("raw", "choices"),
    [
        ({**spec_dict(), "sampling": {"sampler": "x"}}, N.SAMPLERS),
        ({**spec_dict(), "data": {**DATA, "family": "x"}}, N.FAMILIES),
        ({"data": DATA, "variants": {"v": {"kind": "regularized_hierarchical", "penalty": "x"}}}, N.PENALTIES),
        ({"data": DATA, "variants": {"v": {"kind": "x"}}}, N.VARIANTS),
    ],
    ids=["sampler", "family", "penalty", "kind"],
)
def test_choices_come_from_the_names_module(raw, choices):
    (msg,) = problems(raw)
    assert msg.endswith(f"is not valid; valid choices: {', '.join(map(repr, choices))}.")
    assert "= 'x'" in msg


def test_types_are_not_coerced():
    # TOML has types: a string is not a number, a float is not an integer, and 1 is not true
    probs = problems({**spec_dict(centered=1), "sampling": {"draws": 100.0, "seed": "1"},
                      "output": {"plots": 0, "ci_prob": "0.9"}})
    assert probs == [
        "[variants.v] centered = 1 must be true, false or 'auto'.",
        "[sampling] draws = 100.0 must be an integer >= 1.",
        "[sampling] seed = '1' must be an integer >= 0.",
        "[output] ci_prob = '0.9' must be in the open interval (0, 1).",
        "[output] plots = 0 must be true or false.",
    ]


def test_numbers_are_kept_as_given():
    spec = parse_spec({"data": DATA, "variants": {"r": {"kind": "ridge_fixed_effects", "lam": 4,
                                                        "priors": {"sigma": 2}}}})
    assert spec.variants["r"] == {"kind": "ridge_fixed_effects", "lam": 4.0, "priors": {"sigma": 2}}
    assert type(spec.variants["r"]["priors"]["sigma"]) is int  # priors reach the factory untouched


def test_array_of_tables_problems_are_all_reported():
    raw = {"data": DATA, "variants": [{"kind": "random_intercepts"}, {"kind": "random_intercepts"}, 5,
                                      {"lam": 1.0}, {"name": "r", "kind": "ridge_fixed_effects", "lam": 0}]}
    assert problems(raw) == [
        "[[variants]] entry 2: the name 'random_intercepts' is used twice; give each variant its own name = \"...\".",
        "[[variants]] entry 3 must be a table; got 5.",
        "[[variants]] entry 4 is missing the required key 'kind'; valid kinds: random_intercepts, "
        "ridge_fixed_effects, regularized_hierarchical.",
        "[variants.r] lam = 0 must be a positive number (the prior precision of a group effect).",
    ]


def test_variant_names_and_tables():
    assert problems({"data": DATA, "variants": {"a b": {"kind": "random_intercepts"},
                                                "x": {"name": "x", "kind": "random_intercepts"}}}) == [
        "[variants.x] has the key 'name'; in [variants.<name>] form the table's name is the variant's name: "
        "remove it.",
        "[variants] name 'a b' must be letters, digits, '_', '-' or '.' (it names output files).",
    ]
    assert problems({"data": DATA, "variants": {"v": 5}}) == ["[variants.v] must be a table; got 5."]
    assert problems({"data": DATA, "variants": []}) == [
        "variants = [] must be at least one table [variants.<name>] or [[variants]] entry."]


def test_rules_between_keys():
    assert problems({"data": {**DATA, "family": "binomial", "exposure": "t"}, "variants": spec_dict()["variants"]}) == [
        "[data] family = 'binomial' needs the key 'trials' (a column or an integer).",
        "[data] exposure is only used with family = 'poisson'; got family = 'binomial'.",
    ]
    no_source = {k: v for k, v in DATA.items() if k != "dataset"}
    assert problems({"data": {**no_source, "parameters": {"seed": 1}}, "variants": spec_dict()["variants"]}) == [
        "[data] needs one of the keys dataset, path, simulate (where the data come from).",
        "[data] parameters is only used with simulate = ...; remove it or add simulate.",
    ]


def test_with_sampling_reports_every_override_problem():
    spec = parse_spec(spec_dict())
    with pytest.raises(SpecError) as info:
        spec.with_sampling(draws=0, sampler="stan", chains=None)
    assert info.value.problems == [
        "[sampling] draws = 0 must be an integer >= 1.",
        "[sampling] sampler = 'stan' is not valid; valid choices: 'auto', 'pymc', 'nutpie', 'numpyro', 'gibbs', 'integrated'.",
    ]


def test_the_format_exports_as_json_schema():
    js = schema.SpecFile.model_json_schema()
    assert js["required"] == ["data", "variants"]
    assert js["$defs"]["DataTable"]["properties"]["family"]["enum"] == list(N.FAMILIES)
    assert js["$defs"]["SamplingTable"]["properties"]["draws"] == {
        "default": 1000, "description": "an integer >= 1", "minimum": 1, "title": "Draws", "type": "integer"}


# ------------------------------------------------------------------------------------------------------
def test_planned_files_follow_the_output_settings():
    spec = parse_spec({"data": DATA, "variants": {"ri": {"kind": "random_intercepts"},
                                                  "ridge": {"kind": "ridge_fixed_effects"}},
                       "output": {"plots": False}})
    files = run.planned_files(spec)
    assert files[:4] == ["summary.txt", "spec.toml", "run.json", "compare_loo.csv"]
    assert "ri/implied_ridge.csv" in files and "ridge/implied_ridge.csv" not in files  # ridge has no tau
    assert "ri/ppc.csv" in files and not any(f.endswith(".png") for f in files)
    assert len(files) == 4 + 6 + 5


def test_check_output_refuses_files_in_the_way(tmp_path):
    spec = parse_spec(spec_dict())
    assert run.check_output(spec, tmp_path / "new") == tmp_path / "new"
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "unrelated.txt").write_text("")
    run.check_output(spec, tmp_path / "new")  # a folder without this run's files is fine
    (tmp_path / "new" / "v").mkdir()
    (tmp_path / "new" / "v" / "fit.nc").write_text("")
    with pytest.raises(FileExistsError, match=r"already holds output files \(v/fit.nc\); pass --force"):
        run.check_output(spec, tmp_path / "new")
    run.check_output(spec, tmp_path / "new", force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        run.check_output(spec, tmp_path / "file", force=True)


# ------------------------------------------------------------------------------------------------------
# The refusals import nothing heavy. hierpool/__init__.py imports the whole API, so the first test loads
# the workflow layer without it (a bare package object): it checks what this layer imports.
_REFUSE = textwrap.dedent("""
    import json, sys, types
    root, heavy, argvs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    pkg = types.ModuleType("hierpool")  # the package without running its __init__
    pkg.__path__ = [root + "/hierpool"]
    sys.modules["hierpool"] = pkg
    from hierpool.workflow.cli import main
    codes = [main(argv) for argv in argvs]
    print(json.dumps({"codes": codes, "heavy": [m for m in heavy if m in sys.modules]}))
""")


def _bad_and_existing(tmp_path) -> list[list[str]]:
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "models" / "radon.toml").read_text().replace('"gaussian"', '"gausian"'))
    out = tmp_path / "existing"
    (out / "ridge").mkdir(parents=True)
    (out / "ridge" / "fit.nc").write_text("")
    return [["run", str(ROOT / "models" / "radon.toml"), "--out", str(out)],
            ["run", str(bad), "--out", str(tmp_path / "o")], ["validate", str(bad)]]


def test_refusals_import_no_heavy_module(tmp_path):
    argvs = _bad_and_existing(tmp_path)
    res = subprocess.run([sys.executable, "-c", _REFUSE, str(ROOT), json.dumps(HEAVY), json.dumps(argvs)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"codes": [2, 2, 2], "heavy": []}
    assert "already holds output files (ridge/fit.nc)" in res.stderr
    assert "family = 'gausian' is not valid" in res.stderr
    assert not (tmp_path / "o").exists()


def test_python_m_hierpool_refuses_before_importing_pymc(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = _bad_and_existing(tmp_path)[0]
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hierpool", *argv], capture_output=True,
                         text=True, timeout=300, cwd=ROOT, env=env)
    assert res.returncode == 2
    assert "already holds output files" in res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY)
