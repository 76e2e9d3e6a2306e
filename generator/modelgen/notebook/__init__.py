"""``modelgen.deploy()``: ship a trained model from a notebook (round trip, manifest, upload, merge request)."""
