"""Pure functions of arrays (layer 2): ranking metrics on hit matrices, pointwise metrics (AUC, log loss, calibration),
statistics (bootstrap CIs, paired tests)."""
