"""Statistical validation of hierpool's models (not part of the installed package).

- :mod:`validation.sbc`: simulation-based calibration (Talts et al. 2018) of every variant and family,
  with a deliberately misspecified control that must fail the same test.
- :mod:`validation.coverage`: frequency with which central posterior intervals of group effects cover the
  truth, reported separately for groups of one row.
- :mod:`validation.run_full`: the full run (``python -m validation.run_full``), which writes histograms,
  CSV and markdown tables to ``validation/results/``.

See ``validation/README.md`` for what is validated, how to run it and the latest results.
"""
