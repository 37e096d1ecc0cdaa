"""What a recipe is, apart from running it (:mod:`smu.workflows.recipe` does that): its schema and
checks (``config``, ``yaml_reader``), the shipped ones (``catalog``: the YAML files of the repository's
``recipes/``, carried in the wheel as ``smu.workflows.recipes.shipped``), and its report's numbers
(``statistics``) and report.md (``report``)."""
