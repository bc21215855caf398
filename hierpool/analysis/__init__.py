"""Layer 4, analysis: everything computed from a fit's DataTree alone, for any variant.

Reads fits through ``fitview`` (the checked read side of the naming contract) and never imports the
model factories. ``shrinkage``, ``ranking``, ``ppc``, ``predict``, ``compare``, ``report``.
"""
