"""``modelgen catalog``: the GitOps repository as a static site, an index of every model and a card
per model. ``facts`` reads the repository (and the drift reports), ``site`` renders the pages."""
