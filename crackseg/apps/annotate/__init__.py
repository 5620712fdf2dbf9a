"""``crackseg annotate``: weak labels and traced masks for a folder of photos, in a local web page.

The page (:mod:`.server`, plain HTML/JS/CSS in ``static/``) shows one photo at a time under a grid of
patches: the user marks crack patches, labels the photo (crack / no crack / skip) and traces cracks
into a mask along a minimal path of a crack-response cost map (:mod:`.trace`; optionally a labeler's
soft map, which also pre-marks patches: :mod:`.suggest`). Every change is one request, saved at once
(:mod:`.store`): the project's weak-label CSV (``OUT/weak_labels.csv``), ``OUT/masks/<stem>.png``
with the photo beside it in ``OUT/images/`` (so ``OUT`` is a ``folder`` data set), and each photo's
state with its revision number in ``OUT/annotations/<stem>.json``.
"""
