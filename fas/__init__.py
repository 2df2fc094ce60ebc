"""FAS: the Fusion Acoustic-Semantic model of the FAS/CASE paper, its arms, features, training.

Modules: ``model`` (the network and its arms as configs), ``features`` (encoder pathways and the
feature cache), ``train`` (training, evaluation, the conflict experiment), ``adapter`` (FAS as a
workbench model: ``--model fas``), ``instrument`` (Top-K picks, query attention mass,
attributions), ``cli`` (``probe fas ...``), ``demo`` (the ``make demo`` step).

Importing the package is cheap: the registry imports every module here on ``probe list models``,
so only torch may be imported at module top; transformers, faster_whisper, opensmile and
captum are imported inside the functions that need them.
"""
