"""Training the S3POT adapter without occlusion labels (SPEC.md, "Training objective").

- :mod:`s3pot.models.losses`: the paper's three objectives.
- :mod:`.steps`: what both modes share (the trainable SA layer, a sample's prompts, its loss).
- :mod:`.embeddings`: the frozen encoder's outputs on disk, so it runs once per image.
- :mod:`.data`: a dataset checked, encoded and prompted before the first epoch.
- :mod:`.trainer`: standard training, resumable (``s3pot train``, :mod:`.train`).
- :mod:`.per_image`: per-image fitting with early stopping (``s3pot fit-image``, :mod:`.fit_image`).
- :mod:`.curve`: the training curve.

Needs the ``torch`` and ``train`` extras; the runtime does not import this package.
"""
