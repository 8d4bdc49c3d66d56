"""LAMBO (large AI model based offloading): the section V MEC scenario, its vectorized
objectives, the input embedding, the asymmetric encoder-decoder (AED), exact and
differential-evolution experts, and actor-critic pre-training. docs/lambo.md.

``scenario`` and ``system`` need numpy only; ``embedding``, ``model`` and ``acl`` import
torch."""
