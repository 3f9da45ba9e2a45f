"""Shadow and live: the tee that copies a connection to the secondary backend, and the
pure comparison that cuts both event streams into turns and judges each one.
"""
