"""What every layer shares: errors, declared options and their coercion, name registries, masks,
progress reporting and terminal-safe text. Imports neither torch nor Rich at package level."""
