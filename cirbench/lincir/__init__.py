"""LinCIR (Gu et al., CVPR 2024): phi trained from text alone, exactly as the official code, only faster.

Modules, one job each:

- ``tokenizer``: upstream's training tokenizer (HF CLIPTokenizer + ``[$]``) reproduced on open_clip's BPE;
- ``corpus``: caption corpora through Hugging Face ``datasets`` and their content hash;
- ``masking``: caption cleaning and Self-Masking Projection (``upstream`` and ``whole-word`` modes);
- ``maskcache``: masks computed once per corpus, stored as token ids on disk;
- ``cirbench.phi`` (outside this package, shared with inference): the phi network and its checkpoint formats;
- ``objective``: the loss with upstream's RNG order and the exact speedups;
- ``packed``, ``packplan``, ``varlen``: the text tower on real tokens only, its packing plan (built on the host,
  optionally bucketed for CUDA graphs) and its attention kernels;
- ``targets``: the on-disk cache of clean-caption target embeddings;
- ``batches``: a step's inputs assembled on the host and copied to the device, optionally one step ahead;
- ``optim``: phi's AdamW (default or fused), one checkpoint format for both;
- ``levers``: the hardware-limit levers a run may use on its device, and what ran;
- ``selection``: model selection on a validation benchmark;
- ``config``: the run's options, each declared with its role (recipe, schedule, location, runtime);
- ``distributed``: the torchrun process group and its collectives;
- ``rundir``: the run directory (config, resume state, checkpoints, ``train_meta.json``), written atomically;
- ``trainer``: the training loop.

The evaluation method is ``cirbench.methods.lincir``; see ``docs/LINCIR.md``. Importing this package is cheap:
submodules load torch, spaCy or ``datasets`` only when imported.
"""
