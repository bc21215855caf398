"""Layer 6, workflow: model specs (TOML), the run pipeline, and the command line on top of them."""
