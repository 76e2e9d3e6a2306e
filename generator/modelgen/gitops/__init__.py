"""The GitOps repository: git plumbing, the repository's scaffold and settings, publishing a
model as a branch and merge request, and template upgrades merged three ways."""
