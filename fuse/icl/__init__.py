"""In-context autoregressive learning (Sander et al., ICML 2024): data, linear attention,
training, and the closed-form one-GD-step and OLS predictors it is compared with."""

from fuse.icl.attention import LinearAttention, PositionalLinearAttention, causal_linear_attention
from fuse.icl.data import augmented_tokens, context_matrices, plain_tokens, trajectories
from fuse.icl.predictors import fit_step_size, gd_step_features, gd_step_predictions, ols_predictions
from fuse.icl.training import ICLConfig, ICLResult, evaluate, train

__all__ = [
    "ICLConfig", "ICLResult", "LinearAttention", "PositionalLinearAttention", "augmented_tokens",
    "causal_linear_attention", "context_matrices", "evaluate", "fit_step_size", "gd_step_features",
    "gd_step_predictions", "ols_predictions", "plain_tokens", "train", "trajectories",
]
