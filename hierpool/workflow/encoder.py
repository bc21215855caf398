"""``hp.GroupEncoder``: a leak-free scikit-learn transformer of group features from a hierarchical fit.

A pipeline in the workflow layer: it prepares the data (:func:`hierpool.prepare`), builds the model (a
factory), fits it (:func:`hierpool.fit`, which picks the fastest exact path: the integrated samplers for gaussian
random intercepts and for count models with predictors, the integrated bernoulli likelihood without
predictors) once on all rows and once per cross-fitting fold, and computes each group's features from the
fit (:func:`hierpool.analysis.features.group_features`).

**Compile once and refit?** (Measured when gaussian fits ran on nutpie; the gaussian integrated sampler
that ``"auto"`` runs now compiles nothing.) Measured on the 2-core reference machine (shared, ``nice``),
collapsed gaussian random intercepts, 8,000 of 10,000 groups' rows per fold, 4 chains x 1000 draws: building the model 0.08-0.10
s, compiling it 1.2-2.6 s (PyTensor's numba cache is warm after the first fold), sampling 5.5-6.2 s, and the
whole ``hp.fit`` 10.2-10.5 s (the rest: drawing the group effects, diagnostics). Building and compiling is
12-25% of a fold; and a fold's training rows are a different design (group sizes, groups), while a compiled
model refits only a new *response* of the same design (:func:`hierpool.models.collapse.data_for`). Reusing
one compiled model across folds would need the design as data containers in the factories, for at most a
quarter of the time: not done; each fold builds its own model. A whole 5-fold ``fit_transform`` (6 fits)
took 3.4 times one ``hp.fit`` at 10,000 gaussian groups (50 s against 15 s) and 4.4 times at 100,000 (101 s
against 23 s) (``benchmarks/bench_encoders.py``, ``benchmarks/README.md``).
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from hierpool.analysis.features import check_features, group_features, row_features, top_k_count
from hierpool.analysis.predict import check_label_kinds
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import one_of, positive_int, probability
from hierpool.data.prepare import prepare
from hierpool.inference.sampling import fit as _hp_fit
from hierpool.models import factories

__all__ = ["GroupEncoder"]

_FAMILIES = ("auto", "gaussian", "bernoulli", "poisson")
_Y = "__y__"  # the response's column in the frame handed to hp.prepare
_FACTORIES = {"random_intercepts": factories.random_intercepts,
              "ridge_fixed_effects": factories.ridge_fixed_effects,
              "regularized_hierarchical": factories.regularized_hierarchical}


def _sample(model, *, draws: int, tune: int, chains: int, sampler: str, random_seed: int):
    """One fit of one model (the seam that fast tests replace with a plug-in posterior)."""
    return _hp_fit(model, draws=draws, tune=tune, chains=chains, sampler=sampler, random_seed=random_seed,
                   progressbar=False, log_likelihood=False)


class GroupEncoder(TransformerMixin, BaseEstimator):
    """Encode a group column (member, hospital, county) by the posterior of each group's effect.

    ``fit(X, y)`` fits a hierarchical model of ``y`` with the group column of ``X`` as the grouping factor
    (and ``predictors``, columns of ``X``, as fixed effects) and keeps per group the features below.
    ``transform(X)`` gives every row the features of its group. ``fit_transform(X, y)`` returns
    *cross-fitted* features: the rows are split into folds, and each row's features come from a fit on the
    other folds, which never saw that row's outcome (the group's other rows still inform it). Use
    ``fit_transform`` on the training rows of a next-stage model and ``transform`` on new rows: as with
    scikit-learn's :class:`~sklearn.preprocessing.TargetEncoder`, ``fit(X, y).transform(X)`` is *not*
    ``fit_transform(X, y)``: it returns in-sample features, which leak each row's own outcome into its
    feature.

    Parameters
    ----------
    group : str or int, optional
        The group column of ``X``: a column name of a DataFrame, or a position (arrays, or a DataFrame
        without such a name). Default: the first column.
    family : {"auto", "gaussian", "bernoulli", "poisson"}
        The response family. ``"auto"``: ``bernoulli`` when ``y`` takes exactly two values (booleans,
        0/1, or two labels of any kind: ``classes_[1]`` is the event, as in scikit-learn), else
        ``gaussian`` for numbers (non-numeric ``y`` with more than two labels is an error).
    predictors : sequence of str or int
        Columns of ``X`` used as fixed effects in the group model (names or positions), so that a group's
        effect is adjusted for them. They are not returned (route them to the next stage yourself, e.g.
        ``"passthrough"`` in a ColumnTransformer); columns of ``X`` that are neither the group nor a
        predictor are ignored.
    variant : {"random_intercepts", "ridge_fixed_effects", "regularized_hierarchical"}
        The model (:func:`hierpool.random_intercepts`, ...). Settings of the factory (``lam``,
        ``penalty``, ``priors``) go in ``model_kwargs``.
    features : "all" or sequence of str
        Which features, from ``"effect_mean"``, ``"effect_sd"``, ``"estimate"``, ``"rank_pct"``,
        ``"rank_pct_width"``, ``"p_top_k"``, ``"n"`` (:mod:`hierpool.analysis.features`: effect mean and SD on
        the linear-predictor scale, the group's mean response on the natural scale, posterior mean rank
        percentile (1 = largest effect) and the width of its ``ci_prob`` interval, P(among the ``top_k``),
        rows). Returned in that order, named ``{group}__{feature}`` (:meth:`get_feature_names_out`).
        Default: effect mean and SD.
    cv : int or cross-validation splitter
        Folds of ``fit_transform``. An integer K: :class:`~sklearn.model_selection.KFold` over rows,
        ``shuffle=True``, seeded from ``random_state`` (folds do not depend on ``y``). A splitter is called
        as ``cv.split(X, y, groups=group labels)``: :class:`~sklearn.model_selection.GroupKFold` holds
        whole groups out (their rows then get the population's features); a splitter that reads ``y``
        (``StratifiedKFold``) makes the folds, not the features, depend on the outcomes. Every row must be
        in exactly one test fold.
    random_state : int, RandomState or None
        Seeds the folds and every fit: with an integer, results are reproducible.
    draws, tune, chains : int
        Passed to :func:`hierpool.fit` for each of the K + 1 fits.
    sampler : str
        Passed to :func:`hierpool.fit` (``"auto"`` picks the fastest exact sampler for the model).
    ci_prob : float
        Probability of the rank interval behind ``rank_pct_width``.
    top_k : float or int
        ``p_top_k`` is P(the group is among the ``top_k`` largest effects): a fraction of the groups in
        (0, 1) (default 0.1; the same fraction in every fold) or a count, from 1 to the number of training
        groups (in a fold's fit that holds fewer groups, the count is all of them).
    model_kwargs : dict, optional
        Keywords of the factory, e.g. ``{"lam": 4.0}`` for the ridge, ``{"priors": {...}}``.

    Attributes
    ----------
    family_ : str
        The family used.
    classes_ : ndarray or None
        The two labels of a bernoulli ``y`` (``classes_[1]`` is coded 1); None otherwise.
    datatree_ : xarray.DataTree
        The fit on all training rows (every hierpool analysis function reads it).
    encodings_ : pandas.DataFrame
        Indexed by group label: the features of each training group (the fit on all rows).
    population_ : pandas.Series
        The features of a group not seen in training: effect mean 0, effect SD ``sqrt(E[tau^2])``, the
        estimate of an average group, rank percentile 0.5, rank width ``ci_prob``, ``p_top_k`` the top
        fraction, n 0 (:mod:`hierpool.analysis.features`).
    groups_ : pandas.Index
        The training groups.
    tau_ : float
        Posterior mean of tau (NaN for the ridge variant, which has none).
    n_features_in_, feature_names_in_
        As in scikit-learn.

    Notes
    -----
    Leak-freeness: with an integer ``random_state``, changing the outcome of training row i leaves row i's
    ``fit_transform`` features unchanged exactly (the fold fit that produces them did not see it, the
    folds do not depend on ``y``, and each fit's seed depends on ``random_state`` and the fold only).

    Cost: K + 1 fits (one per fold, one on all rows). Each uses the fastest exact path ``hp.fit`` has for
    the model; see the module docstring for why no compiled model is shared between folds.

    Examples
    --------
    >>> import hierpool as hp
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> df = hp.datasets.simulate_episodes(n_members=500, seed=1)
    >>> enc = hp.GroupEncoder(group="member_id", features=["effect_mean", "effect_sd", "n"], random_state=0)
    >>> Z = enc.fit_transform(df[["member_id"]], df["readmitted"])          # doctest: +SKIP
    >>> list(enc.get_feature_names_out())                                   # doctest: +SKIP
    ['member_id__effect_mean', 'member_id__effect_sd', 'member_id__n']
    """

    def __init__(self, group=None, family="auto", predictors=(), variant="random_intercepts",
                 features=("effect_mean", "effect_sd"), cv=5, random_state=None, draws=1000, tune=1000,
                 chains=4, sampler="auto", ci_prob=0.9, top_k=0.1, model_kwargs=None):
        self.group = group
        self.family = family
        self.predictors = predictors
        self.variant = variant
        self.features = features
        self.cv = cv
        self.random_state = random_state
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.sampler = sampler
        self.ci_prob = ci_prob
        self.top_k = top_k
        self.model_kwargs = model_kwargs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------------------------------------
    # inputs
    def _check_params(self):
        one_of("family", self.family, _FAMILIES)
        one_of("variant", self.variant, N.VARIANTS)
        self._features = check_features(self.features)
        probability("ci_prob", self.ci_prob)
        top_k_count(self.top_k, 10**9)  # type and range only
        for name in ("draws", "chains"):
            positive_int(name, getattr(self, name), 1)
        positive_int("tune", self.tune, 0)
        if not isinstance(self.sampler, str):
            raise TypeError(f"sampler must be a string (see hp.fit); got {self.sampler!r}.")
        if self.model_kwargs is not None and not isinstance(self.model_kwargs, dict):
            raise TypeError(f"model_kwargs must be a dict of factory keywords or None; got {self.model_kwargs!r}.")
        taken = {"y", "group", "predictors", "family", "data"} & set(self.model_kwargs or {})
        if taken:
            raise ValueError(f"model_kwargs must not set {sorted(taken)}: GroupEncoder sets them from its own "
                             "parameters and from X and y.")
        if isinstance(self.predictors, (str, Integral)):
            raise TypeError(f"predictors must be a sequence of columns, e.g. [{self.predictors!r}]; got "
                            f"{self.predictors!r}.")
        if isinstance(self.cv, (bool, str)) or not (isinstance(self.cv, Integral) or hasattr(self.cv, "split")):
            raise TypeError(f"cv must be an integer >= 2 or a cross-validation splitter; got {self.cv!r}.")
        if isinstance(self.cv, Integral) and self.cv < 2:
            raise ValueError(f"cv must be an integer >= 2 or a cross-validation splitter; got {self.cv!r}.")

    def _frame(self, X, reset: bool):
        """(the validated X, a frame of the group and predictor columns, group position, predictor positions)."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True, reset=reset)
            if len(X) == 0:
                raise ValueError("X has 0 rows (0 samples); GroupEncoder needs rows.")
            frame = X
        else:
            X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=reset)
            frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        cols = list(frame.columns)

        def position(col, role):
            if col is None:
                return 0
            if isinstance(X, pd.DataFrame) and col in cols:
                return cols.index(col)
            if isinstance(col, Integral) and not isinstance(col, bool) and -len(cols) <= col < len(cols):
                return int(col) % len(cols)
            raise ValueError(f"{role}={col!r} is not a column of X; X has {len(cols)} columns"
                             f"{': ' + repr(cols[:20]) if isinstance(X, pd.DataFrame) else ' (positions 0..' + str(len(cols) - 1) + ')'}.")

        gpos = position(self.group, "group")
        ppos = [position(c, "predictors") for c in self.predictors]
        if gpos in ppos:
            raise ValueError(f"predictors includes the group column {cols[gpos]!r}; remove it.")
        if len(set(ppos)) < len(ppos):
            raise ValueError(f"predictors={list(self.predictors)!r} names a column twice.")
        names = [str(c) for c in cols]
        sub = pd.DataFrame({names[p]: frame.iloc[:, p].to_numpy() for p in [gpos, *ppos]})
        self._check_groups(sub[names[gpos]], names[gpos])
        for p in ppos:
            s = sub[names[p]]
            if pd.api.types.is_object_dtype(s) and all(isinstance(v, (int, float, np.number)) for v in s):
                sub[names[p]] = s.astype(float)
        return sub, names[gpos], [names[p] for p in ppos]

    @staticmethod
    def _check_groups(labels: pd.Series, name: str):
        bad = pd.isna(labels).to_numpy()
        if not bad.any() and pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
            bad = ~np.isfinite(labels.to_numpy(dtype=float))
        if bad.any():
            raise ValueError(
                f"group column {name!r} of X has {int(bad.sum())} missing (NaN, None) or infinite labels (first "
                f"row positions: {np.flatnonzero(bad)[:5].tolist()}); every row must belong to a group. Fill them "
                "with a label of their own (e.g. 'unknown') to encode them as one group.")

    def _check_y(self, y, n: int) -> tuple[np.ndarray, str, np.ndarray | None]:
        if y is None:
            raise ValueError("GroupEncoder requires y to be passed, but the target y is None: give the outcome "
                             "the groups are encoded by.")
        y = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y)
        if y.dtype == object and all(isinstance(v, (Integral, float, np.number)) and not isinstance(v, bool)
                                     for v in y.ravel()):
            y = y.astype(float)  # numbers held as objects are numbers
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"y must be one-dimensional (one outcome per row); got shape {y.shape}.")
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} values but X has {n} rows; give one outcome per row.")
        numeric = y.dtype.kind in "biuf"
        if pd.isna(y).any() or (numeric and not np.all(np.isfinite(y.astype(float)))):
            bad = pd.isna(y) | (~np.isfinite(y.astype(float)) if numeric else False)
            raise ValueError(f"y has {int(np.sum(bad))} missing or infinite values (first row positions: "
                             f"{np.flatnonzero(bad)[:5].tolist()}).")
        classes = np.unique(y)
        family = self.family
        if family == "auto":
            if len(classes) == 2:
                family = "bernoulli"
            elif numeric and y.dtype.kind != "b":
                family = "gaussian"
            else:
                raise ValueError(f"y has {len(classes)} distinct non-numeric labels ({classes[:5].tolist()}...); "
                                 "family='auto' encodes a binary y (bernoulli) or a numeric y (gaussian).")
        if family == "bernoulli":
            if numeric:  # booleans and numbers: 0/1 (a bernoulli of other numbers only with family="auto")
                if set(classes.tolist()) <= {0, 1}:
                    return y.astype(float), family, np.array([0, 1], dtype=y.dtype)
                if self.family == "bernoulli":
                    get_family("bernoulli").check_support(y.astype(float), "y")
            if len(classes) != 2:
                raise ValueError(f"y must take two values for family='bernoulli'; it takes {len(classes)} "
                                 f"({classes[:5].tolist()}).")
            return (y == classes[1]).astype(float), family, classes
        if not numeric or y.dtype.kind == "b":
            raise TypeError(f"y must be numeric for family={family!r}; got dtype {y.dtype}.")
        y = y.astype(float)
        get_family(family).check_support(y, "y")
        return y, family, None

    # ------------------------------------------------------------------------------------------------
    def _fit_rows(self, frame: pd.DataFrame, gname: str, pnames: list[str], y: np.ndarray, seed: int,
                  fold: bool = False):
        """Prepare, build and fit the model on these rows; returns (group-feature table, population). A
        ``fold``'s fit may hold fewer groups than a ``top_k`` count: there the count is all of them."""
        df = frame.assign(**{_Y: y})
        n_groups = pd.unique(df[gname]).shape[0]
        if n_groups < 2:
            raise ValueError(f"GroupEncoder needs rows of at least 2 groups in every fit; got {len(df)} row(s) "
                             f"(samples) of {n_groups} group. With 1 sample or one group there is no spread of "
                             "groups to learn.")
        gd = prepare(df, y=_Y, group=gname, predictors=pnames, family=self.family_)
        model = _FACTORIES[self.variant](gd, **(self.model_kwargs or {}))
        dt = _sample(model, draws=self.draws, tune=self.tune, chains=self.chains, sampler=self.sampler,
                     random_seed=int(seed))
        table, population = group_features(dt, self._features, ci_prob=self.ci_prob, top_k=self.top_k,
                                           clip_top_k=fold)
        return dt, table, population

    def _fit_all(self, X, y):
        self._check_params()
        frame, gname, pnames = self._frame(X, reset=True)
        yv, self.family_, self.classes_ = self._check_y(y, len(frame))
        self._group_name = gname
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        dt, table, population = self._fit_rows(frame, gname, pnames, yv, seed)
        self.datatree_ = dt
        self.encodings_ = table
        self.population_ = population
        self.groups_ = pd.Index(table.index, name=gname)
        post = dt["posterior"]
        self.tau_ = float(post[N.TAU].mean()) if N.TAU in post else float("nan")
        return frame, gname, pnames, yv, seed

    def fit(self, X, y=None):
        """Fit the group model on all rows of ``X`` and keep each group's features.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Holds the group column and the ``predictors``.
        y : array-like of shape (n_samples,)
            The outcome.

        Returns
        -------
        self
        """
        self._fit_all(X, y)
        return self

    def transform(self, X):
        """The features of each row's group, from the fit on all training rows (in-sample for training rows).

        Rows of groups not seen in training get :attr:`population_`.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out)
        """
        check_is_fitted(self, "encodings_")
        frame, gname, _ = self._frame(X, reset=False)
        labels = frame[gname].to_numpy()
        # ids of another kind than the training groups' ("1" against 1) would match none: every row would
        # silently get the population features
        check_label_kinds(self.groups_, labels, "X", gname)
        return row_features(self.encodings_, self.population_, labels)

    def fit_transform(self, X, y=None, **fit_params):
        """Fit on all rows, and return cross-fitted features of the rows of ``X`` (leak-free).

        Each row's features come from the fit on the rows of the other folds (``cv``); a row whose group
        has no rows there gets that fit's population features. The fit on all rows is kept for
        :meth:`transform`.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out)
        """
        if fit_params:
            raise TypeError(f"fit_transform takes no extra parameters; got {sorted(fit_params)}.")
        frame, gname, pnames, yv, seed = self._fit_all(X, y)
        n = len(frame)
        if isinstance(self.cv, Integral):
            from sklearn.model_selection import KFold

            if self.cv > n:
                raise ValueError(f"cv={self.cv} folds need at least {self.cv} rows (samples); X has {n}.")
            splitter = KFold(n_splits=int(self.cv), shuffle=True, random_state=seed)
        else:
            splitter = self.cv
        labels = frame[gname].to_numpy()
        out = np.full((n, len(self._features)), np.nan)
        seen = np.zeros(n, dtype=np.int64)
        with warnings.catch_warnings():  # a splitter that does not use groups says so: it is passed for those that do
            warnings.filterwarnings("ignore", message="The groups parameter is ignored", category=UserWarning)
            folds = list(splitter.split(np.zeros((n, 1)), yv, groups=labels))
        for k, (train, test) in enumerate(folds):
            _, table, population = self._fit_rows(frame.iloc[train].reset_index(drop=True), gname, pnames,
                                                  yv[train], (seed + 7919 * (k + 1)) % np.iinfo(np.int32).max,
                                                  fold=True)
            out[test] = row_features(table, population, labels[test])
            seen[test] += 1
        if not np.all(seen == 1):
            raise ValueError("the test folds of cv must cover every row exactly once (found rows in "
                             f"{int((seen == 0).sum())} no fold and {int((seen > 1).sum())} several folds); use "
                             "KFold, GroupKFold or another splitter with non-overlapping test folds.")
        return out

    def get_feature_names_out(self, input_features=None):
        """``{group}__{feature}`` for each feature, e.g. ``member_id__effect_mean``.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "encodings_")
        names = _check_feature_names_in(self, input_features)
        cols = [str(c) for c in names]
        gname = self._group_name
        if input_features is not None:
            gname = cols[self._group_position(cols)]
        return np.asarray([f"{gname}__{f}" for f in self._features], dtype=object)

    def _group_position(self, cols):
        if self.group is None:
            return 0
        if str(self.group) in cols and not isinstance(self.group, Integral):
            return cols.index(str(self.group))
        return int(self.group) % len(cols)

