"""Model specs shipped inside the package (read with ``importlib.resources``): ``episodes.toml`` is the
spec that ``hierpool demo`` runs and ``hierpool demo --print-spec`` prints, and its only copy (an installed
package cannot read the repository's ``models/`` folder)."""
