"""CRS policies, one file each (registry table ``crs_policy``): random, max-entropy, EAR, SCPR, FacT-CRS."""
