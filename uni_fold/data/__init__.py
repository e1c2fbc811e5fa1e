"""Input processing: raw features (numpy, AF2's names) -> the model batch (torch).

Entry point: :func:`process_features`. The feature table is :data:`schema.FEATURES`.
"""
from uni_fold.data.process import MODES, msa_cluster_size, process_features
from uni_fold.data.sampling import Sampler, TorchSampler
from uni_fold.data.schema import FEATURES, FeatureSpec, check_batch, feature_names

__all__ = [
    "FEATURES",
    "MODES",
    "FeatureSpec",
    "Sampler",
    "TorchSampler",
    "check_batch",
    "feature_names",
    "msa_cluster_size",
    "process_features",
]
