"""``modelgen batch``: a model's batch job run here, as a Kubernetes Job, or as a SparkApplication."""
