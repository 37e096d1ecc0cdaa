"""The methods: one file per pruning method (``pruning/``) and per unlearning method (``unlearning/``),
each ending with its declaration; plug-ins join through the entry-point groups ``smu.pruning`` and
``smu.unlearning``."""
