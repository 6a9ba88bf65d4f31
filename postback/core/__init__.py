"""The pure core: policies, outcome classification, signing and the delivery state machine.

Nothing in this package performs I/O or reads the clock; time is always passed in.
"""
