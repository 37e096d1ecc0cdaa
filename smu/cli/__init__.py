"""The terminal: the Typer app (``app``), one thin module per command (parse options, call one
workflow, render its result), every option spelled once (``flags``), the options generated from
method dataclasses (``generate``), and the only code that prints (``ui``, ``report``)."""
