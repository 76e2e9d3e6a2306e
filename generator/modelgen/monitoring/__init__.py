"""After deployment: the reference profile, drift statistics and reports, notifications, retraining."""
