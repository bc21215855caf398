"""PSIS-LOO comparison and grouped K-fold cross-validation (being written)."""


def compare(fits):
    raise NotImplementedError


def cross_validate(factory, data, folds=5, by="row"):
    raise NotImplementedError
