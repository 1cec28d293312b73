"""Side-by-side benchmarks of ctlwire against the reference SDK (``python -m bench``)."""
