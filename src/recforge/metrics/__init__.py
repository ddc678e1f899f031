"""Pure functions of arrays (layer 2): ranking metrics on hit matrices, statistics (bootstrap CIs, paired tests)."""
