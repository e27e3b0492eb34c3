"""Universal multimodal embedders that encode their own gallery: mteb models and Hugging Face families."""
