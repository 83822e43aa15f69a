"""numpy/scipy statistics kernels of actstats.

Every kernel takes plain arrays and ``axis=`` (int, tuple, or None for all axes),
skips NaN (the padding of absent units, layers and samples; see ``_rows``), removes the
reduced axes and puts any new axis last. Test results are frozen dataclasses whose
fields are arrays over the kept axes. Nothing here imports xarray, dask, torch or
matplotlib; the xarray layer maps ``dim=`` onto these functions.

Modules: ``moments`` (mergeable moments), ``normality`` (tests and effect sizes),
``bounded`` (saturation, bimodality, Beta fits), ``fits`` (distribution families),
``intervals`` (sample-level intervals), ``comparison`` (two groups), ``multiple``
(Benjamini–Hochberg).
"""

from ._rows import DEFAULT_SEED, deterministic_subsample, normalize_axis
from .bounded import (
    BETA_STATISTIC_FIELDS,
    BIMODALITY_COEFFICIENT_THRESHOLD,
    DEFAULT_DELTA,
    MIXTURE_MAX_SIZE,
    SATURATION_FIELDS,
    BetaFit,
    BetaMixtureFit,
    BimodalityResult,
    DipTestResult,
    LogitNormalFit,
    beta_sufficient_statistics,
    bimodal_at_bounds,
    bimodality,
    bimodality_coefficient,
    dip_test,
    fit_beta,
    fit_beta_from_statistics,
    fit_beta_mixture,
    fit_logit_normal,
    rescale_to_unit,
    saturation_counts,
)
from .comparison import DEFAULT_PERMUTATIONS, GroupComparison, compare_groups
from .fits import FAMILIES, SLOW_FIT_MAX_SIZE, FamilyFits, fit_families
from .intervals import (
    DEFAULT_RESAMPLES,
    MIN_INFORMATIVE_SAMPLES,
    FractionInterval,
    bootstrap_mean_interval,
    fraction_interval,
    saturated_fractions,
    wilson_interval,
)
from .moments import MOMENT_FIELDS, MomentStatistics, combine_moments, merge_moments, moment_statistics, moments
from .multiple import benjamini_hochberg
from .normality import (
    SHAPIRO_MAX_SIZE,
    DAgostinoPearsonResult,
    NormalityTestResult,
    anderson_darling,
    dagostino_pearson,
    jarque_bera,
    ks_distance_normal,
    lilliefors,
    shapiro_wilk,
    wasserstein_normal,
)

__all__ = [
    "BETA_STATISTIC_FIELDS",
    "BIMODALITY_COEFFICIENT_THRESHOLD",
    "DEFAULT_DELTA",
    "DEFAULT_PERMUTATIONS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "FAMILIES",
    "MIXTURE_MAX_SIZE",
    "MOMENT_FIELDS",
    "SATURATION_FIELDS",
    "SHAPIRO_MAX_SIZE",
    "SLOW_FIT_MAX_SIZE",
    "BetaFit",
    "BetaMixtureFit",
    "BimodalityResult",
    "DAgostinoPearsonResult",
    "DipTestResult",
    "FamilyFits",
    "FractionInterval",
    "MIN_INFORMATIVE_SAMPLES",
    "GroupComparison",
    "LogitNormalFit",
    "MomentStatistics",
    "NormalityTestResult",
    "anderson_darling",
    "benjamini_hochberg",
    "beta_sufficient_statistics",
    "bimodal_at_bounds",
    "bimodality",
    "bimodality_coefficient",
    "bootstrap_mean_interval",
    "combine_moments",
    "compare_groups",
    "dagostino_pearson",
    "deterministic_subsample",
    "dip_test",
    "fit_beta",
    "fit_beta_from_statistics",
    "fit_beta_mixture",
    "fit_families",
    "fit_logit_normal",
    "fraction_interval",
    "jarque_bera",
    "ks_distance_normal",
    "lilliefors",
    "merge_moments",
    "moment_statistics",
    "moments",
    "normalize_axis",
    "rescale_to_unit",
    "saturated_fractions",
    "saturation_counts",
    "shapiro_wilk",
    "wasserstein_normal",
    "wilson_interval",
]
