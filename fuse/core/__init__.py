"""The method: words, word slices, the t-product algebra, the closed-form adapter and the gradient bridge.

Nothing here knows about model loading, optimization or applications; every other layer builds on it.
"""
