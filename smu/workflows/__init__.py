"""What each command does, as a library call that reads top to bottom: prune, unlearn, evaluate,
audit, tune, the backdoor experiment, recipes and plots."""
