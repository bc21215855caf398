"""The bottom layer: what every other layer shares and nothing of hierpool's own below it.

``names`` (the naming contract of dims, variables and attrs), ``validate`` (argument checks with messages
that name the argument, the value and the valid choices), ``families`` (one object per response family),
``kernels`` (compiled numba kernels), ``quadrature`` (group effects integrated out: the mode search and
adaptive Gauss-Hermite quadrature that every layer uses), ``version``.
"""
