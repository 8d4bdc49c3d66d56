"""Client-edge co-inference training (autonomous-edge-ai-llm, Sec. III-A.2/3): a small
Fashion-MNIST CNN that can be cut after any of its blocks, and a task-oriented
entropy-model compressor (factorized prior, Balle et al. 2018) at the cut, trained with
task loss + lambda x rate."""
