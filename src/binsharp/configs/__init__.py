"""Packaged run configurations: ``<model>.yaml`` overrides merged over a model's default recipe.

``binsharp train --model NAME`` reads ``binsharp/configs/NAME.yaml`` when it exists, then the file given with
``--config``, then the command-line options (each layer over the previous one). The format is documented in
:mod:`binsharp.train.recipe`; ``_template.yaml`` lists every key with its default.
"""
