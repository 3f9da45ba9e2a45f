"""The flags in force and what follows from them: each connection's mode (with a tripped
guard's hold), reloads and their audit, guards, drift and drain, and the release plan.
"""
