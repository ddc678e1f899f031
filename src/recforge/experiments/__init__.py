"""Run folders for every paradigm (layer 8): resolved config, metrics with CIs, provenance, artifact, logs, plots;
seeds, tuning and HTML reports."""
