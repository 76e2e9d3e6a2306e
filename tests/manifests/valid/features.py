"""A custom transformer module, as a pickled pipeline would reference it."""


class Identity:
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X
