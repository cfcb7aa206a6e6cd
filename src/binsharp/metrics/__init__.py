"""Quality indexes exact to the reference MATLAB toolbox (``indexes_evaluation`` / ``indexes_evaluation_FS``).

Inputs are (C, H, W) numpy arrays or torch tensors in DN; they are converted to float64 numpy.

* :func:`reduced_resolution` -- Q2n, Q_avg, SAM, ERGAS, SCC (toolbox) and PSNR, SSIM (Python convention).
* :func:`full_resolution` -- D_lambda^K, D_s, HQNR (or D_lambda, D_s, QNR).
* :class:`BatchEvaluator`, :func:`evaluate_batch` -- mean, std (ddof 1), per-image values and settings.
* :func:`paired_wilcoxon` -- per-index paired significance test of two methods on the same images.
"""

from binsharp.metrics.batch import BatchEvaluator, evaluate_batch, format_mean_std
from binsharp.metrics.full import d_lambda, d_lambda_k, d_s, full_resolution, uqi_blocks
from binsharp.metrics.hypercomplex import q2n, q2n_map
from binsharp.metrics.reduced import ergas, psnr, q_avg, reduced_resolution, sam, scc, ssim
from binsharp.metrics.stats import WILCOXON_TEST, PairedTest, paired_wilcoxon

#: Index names returned by :func:`reduced_resolution`, in table order.
RR_INDEXES = ("q2n", "q_avg", "sam", "ergas", "scc", "psnr", "ssim")
#: Index names returned by :func:`full_resolution` for each variant.
FR_INDEXES = {"hqnr": ("d_lambda_k", "d_s", "hqnr"), "qnr": ("d_lambda", "d_s", "qnr")}
#: True where a larger value is better.
HIGHER_IS_BETTER = {
    "q2n": True, "q_avg": True, "sam": False, "ergas": False, "scc": True, "psnr": True, "ssim": True,
    "d_lambda_k": False, "d_lambda": False, "d_s": False, "hqnr": True, "qnr": True,
}  # fmt: skip

__all__ = [
    "FR_INDEXES",
    "HIGHER_IS_BETTER",
    "RR_INDEXES",
    "WILCOXON_TEST",
    "BatchEvaluator",
    "PairedTest",
    "d_lambda",
    "d_lambda_k",
    "d_s",
    "ergas",
    "evaluate_batch",
    "format_mean_std",
    "full_resolution",
    "paired_wilcoxon",
    "psnr",
    "q2n",
    "q2n_map",
    "q_avg",
    "reduced_resolution",
    "sam",
    "scc",
    "ssim",
    "uqi_blocks",
]
