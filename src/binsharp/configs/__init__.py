"""Packaged run configurations: ``<model>-<dataset>.yaml``, merged over a model's default recipe.

``binsharp train --model NAME --data DATASET`` reads ``binsharp/configs/NAME-DATASET.yaml`` when it exists
(DATASET a named dataset, or a dataset directory whose manifest names one), then the file given with
``--config``, then the command-line options (each layer over the previous one). The format is documented in
:mod:`binsharp.train.recipe`; ``_template.yaml`` lists every key with its default.
"""
