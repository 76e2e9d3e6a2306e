"""Model registries (a local folder or an HTTP store such as Nexus' raw repository) and the
webhook that turns a registry upload into a merge request."""
