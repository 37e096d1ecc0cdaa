"""Recipes: experiments as YAML (config), planned as resumable steps (runner), reported in the paper's
shape (report); the shipped ones live in ``shipped/`` and are listed by ``smu recipes`` (catalog)."""
