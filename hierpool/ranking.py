"""Posterior ranks of groups (being written)."""


def rank_groups(dt, descending=True, ci_prob=0.9, top_k=None):
    raise NotImplementedError


def triple_goal(dt):
    raise NotImplementedError
