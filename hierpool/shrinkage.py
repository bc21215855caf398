"""Shrinkage per group and the ridge penalty a hierarchical fit implies (being written)."""


def shrinkage(dt, ci_prob=0.9):
    raise NotImplementedError


def implied_ridge(dt, ci_prob=0.9):
    raise NotImplementedError


def ridge_path(dt, lams=None):
    raise NotImplementedError
