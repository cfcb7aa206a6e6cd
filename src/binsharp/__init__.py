"""binsharp: pan-sharpening with binarized neural networks.

Packages, by floor (a package imports only from the floors below it; ``tests/test_layering.py`` checks
that no import cycle joins two packages and that no library package imports the command line)
----------------------------------------------------------------------------------------------------------
errors, fileio, sensors    Exceptions, safe output files and digests, the sensor table.
protocol, metrics,         Wald reduced-resolution protocol, quality indexes exact to the reference MATLAB
classic, data, nn          toolbox, classical methods, readers/writers and datasets, binary layers.
weights, zoo               The checkpoint format (safetensors + metadata) and the pretrained-model index.
models                     Model registry: baselines, S2BNet, BNNPan; loading trained weights.
deploy, train              Packed ``.bsp`` export and engine; training engine (PyTorch Lightning).
inference                  The Fuser protocol: classical methods, checkpoints, engine models, tiling.
evaluation                 Test sets, quality indexes of fusers, the benchmark runner.
report                     Tables, figures and the HTML page of a benchmark result.
cli                        The ``binsharp`` command line.
"""

__version__ = "0.1.0"
