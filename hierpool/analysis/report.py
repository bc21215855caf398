"""A one-screen summary of a fit: what was fitted, whether the sampler worked, and the headline numbers.

:func:`summarize` returns a :class:`FitSummary`, which Jupyter renders as HTML (``_repr_html_``) and a
terminal prints as text (``repr``/``str``). The command line (``hierpool run``) prints the same text.
"""

from __future__ import annotations

import html
import json
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.analysis.fitview import as_fit
from hierpool.core import names as N
from hierpool.core.validate import positive_int, probability

__all__ = ["FitSummary", "summarize"]

_VARIANT_TITLES = {
    "random_intercepts": "random intercepts (partial pooling, tau estimated)",
    "ridge_fixed_effects": "ridge on one-hot group dummies (lam fixed by the user)",
    "regularized_hierarchical": "random intercepts with regularized predictors",
}


@dataclass(eq=False)
class FitSummary:
    """The summary of one fit returned by :func:`summarize`.

    Attributes
    ----------
    variant, family : str
    n_rows, n_groups : int
    group_sizes : dict
        ``min``, ``median``, ``max`` rows per group and ``share_under_5`` (fraction of groups with fewer
        than five rows).
    predictors : list of str
    sampler : str
    chains, draws : int
    settings : dict
        The variant's settings that matter for reading it (``lam``, ``penalty``, collapse).
    diagnostics : dict
        The sampling report stored by :func:`hierpool.fit` (``attrs["hierpool_diagnostics"]``):
        divergences, max R-hat, min ESS, ``problems``.
    parameters : pandas.DataFrame
        ``arviz.summary`` of intercept, beta, tau, sigma (those the fit has), unrounded.
    implied_ridge : pandas.DataFrame or None
        :func:`hierpool.implied_ridge` for hierarchical fits; None for a ridge fit (its lam is in
        ``settings``).
    shrinkage : pandas.DataFrame
        The ``head`` groups whose estimates moved furthest from their raw means
        (:func:`hierpool.analysis.shrinkage`).
    ci_prob : float
    """

    variant: str
    family: str
    n_rows: int
    n_groups: int
    group_sizes: dict
    predictors: list
    sampler: str
    chains: int
    draws: int
    settings: dict
    diagnostics: dict
    parameters: pd.DataFrame
    implied_ridge: pd.DataFrame | None
    shrinkage: pd.DataFrame
    ci_prob: float = 0.9
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------------
    @property
    def problems(self) -> list[str]:
        """The sampler's warnings (empty when all is well)."""
        return list(self.diagnostics.get("problems", []))

    def _headline(self) -> str:
        gs = self.group_sizes
        return (f"{self.variant}: {_VARIANT_TITLES.get(self.variant, self.variant)}; family {self.family}; "
                f"{self.n_rows:,} rows in {self.n_groups:,} groups (rows per group: min {gs['min']}, median "
                f"{gs['median']:g}, max {gs['max']}; {gs['share_under_5']:.0%} with fewer than 5)")

    def _settings_line(self) -> str:
        parts = [f"predictors: {', '.join(self.predictors) if self.predictors else 'none'}"]
        if "lam" in self.settings:
            parts.append(f"lam = {self.settings['lam']:g} (prior precision of a group effect)")
        if "penalty" in self.settings:
            parts.append(f"penalty on beta: {self.settings['penalty']}")
        if self.settings.get("collapse"):
            parts.append(f"collapsed likelihood: {self.settings['collapse']}")
        return "; ".join(parts)

    def _sampler_line(self) -> str:
        d = self.diagnostics
        line = f"sampler {self.sampler}: {self.chains} chains x {self.draws} draws; divergences {d.get('divergences', 0)}"
        if "max_rhat" in d:
            line += (f"; max R-hat {d['max_rhat']:.3f} ({d.get('max_rhat_var')}); min ESS bulk "
                     f"{d['min_ess_bulk']:.0f} ({d.get('min_ess_bulk_var')}), tail {d['min_ess_tail']:.0f} "
                     f"({d.get('min_ess_tail_var')})")
        if "min_ess" in d:
            how = "the chains extended" if d.get("round_adds") == "draws" else "rounds of new chains"
            line += (f"; sampled until ESS {d['min_ess']:g}: {'reached' if d.get('min_ess_reached') else 'NOT reached'}"
                     f" after {d.get('rounds')} rounds ({how})")
        if d.get("thinned_for_group_effects"):
            kept = d.get("group_effect_draws")
            line += (f"; group effects kept at {kept} of {self.chains * self.draws} draws" if kept else
                     f"; group effects drawn at 1 draw in {d['thinned_for_group_effects']}")
        return line

    def _ridge_line(self) -> str:
        if self.implied_ridge is None:
            lam = self.settings.get("lam")
            return f"ridge fit: lam = {lam:g} chosen by the user (nothing about tau is learned)."
        t = self.implied_ridge.set_index("units")
        pct = f"{self.ci_prob:.0%}"
        out = []
        for unit, label in (("lam", "lam = 1/tau^2"), ("alpha_sklearn", "scikit-learn alpha"),
                            ("C_sklearn", "scikit-learn C"), ("lambda_glmnet", "glmnet lambda")):
            if unit in t.index:
                r = t.loc[unit]
                out.append(f"{label} {r['estimate']:.4g} [{pct}: {r['conf_low']:.4g}, {r['conf_high']:.4g}]")
        return "implied ridge penalty: " + "; ".join(out)

    def to_text(self) -> str:
        """The summary as plain text (what ``print`` shows)."""
        lines = [self._headline(), self._settings_line(), self._sampler_line()]
        if self.problems:
            lines.append("SAMPLER WARNINGS:")
            lines += [f"  ! {p}" for p in self.problems]
        else:
            lines.append("sampler warnings: none")
        lines.append("")
        lines.append(self.parameters.to_string(float_format=lambda v: f"{v:.4g}"))
        lines.append("")
        lines.append(self._ridge_line())
        lines.append("")
        lines.append(f"groups moved furthest from their raw means (of {self.n_groups:,}):")
        lines.append(self.shrinkage.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    __str__ = __repr__

    def _repr_html_(self) -> str:
        esc = html.escape
        fmt = lambda v: f"{v:.4g}"  # noqa: E731
        parts = [
            '<div class="hierpool-summary">',
            f"<h4 style='margin-bottom:0.2em'>hierpool fit: {esc(self.variant)}</h4>",
            f"<p style='margin-top:0'>{esc(self._headline())}<br>{esc(self._settings_line())}<br>"
            f"{esc(self._sampler_line())}</p>",
        ]
        if self.problems:
            items = "".join(f"<li>{esc(p)}</li>" for p in self.problems)
            parts.append(f"<div style='color:#a40000'><b>Sampler warnings</b><ul>{items}</ul></div>")
        else:
            parts.append("<p style='color:#2a7a2a'>Sampler warnings: none.</p>")
        parts.append(f"<b>Parameters</b> ({self.ci_prob:.0%} equal-tailed intervals)")
        parts.append(self.parameters.to_html(float_format=fmt))
        if self.implied_ridge is not None:
            parts.append("<b>Implied ridge penalty</b> (the lam a ridge on one-hot dummies would need to "
                         "match this fit)")
            parts.append(self.implied_ridge.to_html(index=False, float_format=fmt))
        else:
            parts.append(f"<p>{esc(self._ridge_line())}</p>")
        parts.append(f"<b>Shrinkage</b>: the {len(self.shrinkage)} groups moved furthest from their raw means")
        parts.append(self.shrinkage.to_html(index=False, float_format=fmt))
        parts.append("</div>")
        return "\n".join(parts)


# ------------------------------------------------------------------------------------------------------
def _attr_json(dt: xr.DataTree, key: str) -> dict:
    raw = dt.attrs.get(key)
    if raw is None:
        return {}
    try:
        return json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return {}


def parameter_table(dt: xr.DataTree, ci_prob: float = 0.9) -> pd.DataFrame:
    """``arviz.summary`` (unrounded) of the fit's intercept, beta, tau and sigma, on every stored draw (a
    fit thinned for memory keeps all draws of these; only its group effects are thinned)."""
    import arviz as az

    post = dt["posterior"]
    names = [v for v in (N.INTERCEPT, N.BETA, N.TAU, N.SIGMA) if v in post.data_vars]
    # a parameter fixed at a value (priors={"tau": 0.8}) has no spread: its R-hat and ESS are NaN, quietly
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return pd.DataFrame(az.summary(dt, var_names=names, round_to="none", ci_prob=ci_prob))


def summarize(dt: xr.DataTree, ci_prob: float = 0.9, head: int = 8) -> FitSummary:
    """Summarize a fit on one screen: data, sampler diagnostics, parameters, implied ridge, shrinkage.

    In Jupyter the result renders as HTML; ``print(summary)`` gives the same as text.

    Parameters
    ----------
    dt : xarray.DataTree
        A fit from :func:`hierpool.fit` or :func:`hierpool.load` (any variant and family).
    ci_prob : float
        Probability of the intervals, in (0, 1) (0.9, not 90).
    head : int
        How many groups the shrinkage table shows (those that moved furthest).

    Returns
    -------
    FitSummary
        With the tables as attributes: ``parameters``, ``implied_ridge``, ``shrinkage``, and
        ``diagnostics``/``problems`` from the sampler.

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate_gaussian(n_groups=20, seed=1)
    >>> dt = hp.fit(hp.random_intercepts(df, y="y", group="group", predictors=["x1"]),
    ...             draws=200, tune=200, random_seed=1, progressbar=False)   # doctest: +SKIP
    >>> hp.summarize(dt)                                                       # doctest: +SKIP
    """
    from hierpool.analysis.shrinkage import implied_ridge, shrinkage

    view = as_fit(dt)
    ci_prob = probability("ci_prob", ci_prob)
    head = positive_int("head", head, 1)
    n = view.group_n.values
    n_rows = int(dt["observed_data"][N.Y].size) if "observed_data" in dt.children else int(n.sum())
    sizes = {"min": int(n.min()), "median": float(np.median(n)), "max": int(n.max()),
             "share_under_5": float(np.mean(n < 5))}
    settings = {k: view.settings[k] for k in ("lam", "penalty", "collapse") if view.settings.get(k) is not None}
    shr = shrinkage(dt, ci_prob=ci_prob)
    moved = (shr["estimate"] - shr["raw_mean"]).abs().to_numpy()
    order = np.argsort(-np.nan_to_num(moved, nan=-np.inf), kind="stable")[:head]
    cols = ["group", "n", "raw_mean", "estimate", "conf_low", "conf_high", "pooling", "rho"]
    shr_head = shr.iloc[order][[c for c in cols if c in shr.columns]].reset_index(drop=True)
    post = view.population_post  # every draw sampled (a fit thinned for memory thins only its group effects)
    return FitSummary(
        variant=view.variant, family=view.family, n_rows=n_rows, n_groups=view.n_groups, group_sizes=sizes,
        predictors=view.predictors, sampler=str(dt.attrs.get("hierpool_sampler", "?")),
        chains=int(post.sizes["chain"]), draws=int(post.sizes["draw"]), settings=settings,
        diagnostics=_attr_json(dt, N.ATTR_DIAGNOSTICS), parameters=parameter_table(dt, ci_prob),
        implied_ridge=implied_ridge(dt, ci_prob=ci_prob) if view.hierarchical else None,
        shrinkage=shr_head, ci_prob=ci_prob,
    )
