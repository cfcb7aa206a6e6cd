"""binsharp: pan-sharpening with binarized neural networks.

Subpackages
-----------
protocol   Wald reduced-resolution protocol (MTF filters, MATLAB ``imresize``, 23-tap interpolation).
metrics    Reduced- and full-resolution quality indexes, exact to the reference MATLAB toolbox.
classic    Classical (component-substitution and multiresolution) pan-sharpening methods.
data       Readers/writers (PanCollection h5, toolbox .mat, GeoTIFF), dataset builder, named datasets.
nn         Binarizers, binary layers, Haar wavelets and the complexity counter.
models     Model registry: full-precision baselines, binary baselines, S2BNet, BNNPan.
train      Training engine (PyTorch Lightning), configs and safe checkpoints.
deploy     Export to the packed ``.bsp`` format and the XNOR-popcount inference engine.
cli        The ``binsharp`` command line.
"""

__version__ = "0.1.0"
