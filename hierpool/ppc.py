"""Posterior predictive checks (being written)."""


def ppc(dt):
    raise NotImplementedError
